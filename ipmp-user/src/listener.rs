//! What the control socket and the metrics listener share: a cap on the connections served at
//! once, where a new connection may take the slot of the oldest one that is only waiting on its
//! client, and the deadlines a client must keep. Each connection is its own task, so a slow
//! client holds nobody but itself.

use std::{
    collections::BTreeMap,
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::{
    sync::Notify,
    task::{self, JoinSet},
};
use tracing::warn;

/// The limits a listener holds its clients to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once.
    pub max_connections: usize,
    /// A connection that starts no request for this long is closed.
    pub idle_timeout: Duration,
    /// A request must be complete this long after its first byte (one byte a second is refused).
    pub request_timeout: Duration,
    /// A client must take a response within this.
    pub write_timeout: Duration,
}

/// What one connection task shares with its [`Connections`].
#[derive(Debug)]
struct Shared {
    /// Waiting on the client (reading): may be given up for a new connection. A connection
    /// starts so (it has sent no request yet), until its task first runs.
    waiting: AtomicBool,
    evict: Notify,
}

/// A connection's hold on its slot.
#[derive(Debug)]
pub struct Slot(Arc<Shared>);

impl Slot {
    /// Runs `read` (waiting on the client) so that the connection may be given up for a newer
    /// one meanwhile: `None` when it was.
    pub async fn waiting<F: Future>(&self, read: F) -> Option<F::Output> {
        self.0.waiting.store(true, Ordering::Release);
        let out = tokio::select! {
            biased;
            () = self.0.evict.notified() => None,
            out = read => Some(out),
        };
        self.0.waiting.store(false, Ordering::Release);
        out
    }
}

/// The connection tasks of one listener, at most `limit` holding a slot.
#[derive(Debug)]
pub struct Connections {
    what: &'static str,
    limit: usize,
    /// Whether a new connection may take the slot of one waiting on its client.
    evict: bool,
    tasks: JoinSet<()>,
    /// Slot holders by age (admission order).
    slots: BTreeMap<u64, (task::Id, Arc<Shared>)>,
    next: u64,
    /// Since the cap was last reached: connections given up and refused (logged as one line
    /// when it was reached and one when there is room again, not one per connection).
    at_cap: Option<(u64, u64)>,
}

impl Connections {
    /// `what` names the listener in the log. With `evict`, a connection that has no room takes
    /// the slot of the oldest one waiting on its client; without, it is refused.
    pub fn new(what: &'static str, limit: usize, evict: bool) -> Self {
        Self {
            what,
            limit,
            evict,
            tasks: JoinSet::new(),
            slots: BTreeMap::new(),
            next: 0,
            at_cap: None,
        }
    }

    /// Connections holding a slot.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Makes room for one more connection. When every slot is taken, the oldest connection that
    /// waits on its client is told to go (its task ends soon after and no longer counts);
    /// `false` when none may go, and the new one must be refused.
    pub fn make_room(&mut self) -> bool {
        if self.slots.len() < self.limit {
            return true;
        }
        let (evicted, refused) = self.at_cap.get_or_insert_with(|| {
            warn!(
                listener = self.what,
                limit = self.limit,
                "connection limit reached: new connections take the slots of those waiting \
                 longest on their client, or are refused while all are busy"
            );
            (0, 0)
        });
        let oldest_waiting = self
            .slots
            .iter()
            .find(|(_, (_, s))| self.evict && s.waiting.load(Ordering::Acquire))
            .map(|(&seq, _)| seq);
        match oldest_waiting.and_then(|seq| self.slots.remove(&seq)) {
            Some((_, shared)) => {
                shared.evict.notify_one();
                *evicted += 1;
                true
            }
            None => {
                *refused += 1;
                false
            }
        }
    }

    /// Serves a new connection in its own task; call [`Connections::make_room`] first.
    pub fn spawn<F, S>(&mut self, serve: S)
    where
        S: FnOnce(Slot) -> F,
        F: Future<Output = ()> + Send + 'static,
    {
        let shared = Arc::new(Shared {
            waiting: AtomicBool::new(true),
            evict: Notify::new(),
        });
        let serve = serve(Slot(Arc::clone(&shared)));
        let started = Arc::clone(&shared);
        let handle = self.tasks.spawn(async move {
            // A new connection counts as waiting on its client until its task first runs;
            // from then on only its own `waiting` calls say so.
            started.waiting.store(false, Ordering::Release);
            serve.await;
        });
        self.slots.insert(self.next, (handle.id(), shared));
        self.next += 1;
    }

    /// Waits for a connection task to end and frees its slot; never returns while there are
    /// none (for a `select!` arm).
    pub async fn reap(&mut self) {
        let Some(joined) = self.tasks.join_next_with_id().await else {
            return std::future::pending().await;
        };
        let id = match joined {
            Ok((id, ())) => id,
            Err(e) => {
                warn!(listener = self.what, error = %e, "connection task failed");
                e.id()
            }
        };
        self.slots.retain(|_, (task, _)| *task != id);
        if self.slots.len() < self.limit
            && let Some((evicted, refused)) = self.at_cap.take()
        {
            warn!(
                listener = self.what,
                evicted, refused, "below the connection limit again"
            );
        }
    }
}

#[cfg(test)]
mod tests;
