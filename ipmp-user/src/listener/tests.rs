use std::time::Duration;

use tokio::sync::oneshot;

use super::*;

/// A connection task that waits on its "client" (`read`) and reports whether it was given up.
fn waiting_task(
    read: oneshot::Receiver<()>,
    outcome: oneshot::Sender<&'static str>,
) -> impl FnOnce(Slot) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
    move |slot| {
        Box::pin(async move {
            let what = match slot.waiting(read).await {
                None => "evicted",
                Some(_) => "read",
            };
            let _ = outcome.send(what);
        })
    }
}

/// Runs `reap` until the number of slot holders is `n` (tasks end asynchronously).
async fn reap_until(c: &mut Connections, n: usize) {
    tokio::time::timeout(Duration::from_secs(5), async {
        while c.len() != n {
            c.reap().await;
        }
    })
    .await
    .expect("slots freed");
}

#[tokio::test]
async fn the_oldest_waiting_connection_gives_way() {
    let mut c = Connections::new("test", 2, true);
    let mut outcomes = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..2 {
        assert!(c.make_room());
        let (client, read) = oneshot::channel();
        let (tx, rx) = oneshot::channel();
        c.spawn(waiting_task(read, tx));
        clients.push(client);
        outcomes.push(rx);
    }
    task::yield_now().await;
    // Full: the first gives way, the second keeps its slot.
    assert!(c.make_room());
    assert_eq!(c.len(), 1);
    let mut outcomes = outcomes.into_iter();
    assert_eq!(outcomes.next().unwrap().await.unwrap(), "evicted");
    let second = clients.pop().unwrap();
    second.send(()).unwrap();
    assert_eq!(outcomes.next().unwrap().await.unwrap(), "read");
    reap_until(&mut c, 0).await;
}

#[tokio::test]
async fn busy_connections_keep_their_slots_and_a_new_one_is_refused() {
    let mut c = Connections::new("test", 1, true);
    let (release, busy) = oneshot::channel::<()>();
    assert!(c.make_room());
    // Busy with the daemon: never in `waiting`.
    c.spawn(move |_slot| async move {
        let _ = busy.await;
    });
    task::yield_now().await;
    // Polled once, not waiting on its client: it stays.
    assert!(!c.make_room());
    assert_eq!(c.len(), 1);
    release.send(()).unwrap();
    reap_until(&mut c, 0).await;
    assert!(c.make_room());
}

#[tokio::test]
async fn without_eviction_a_full_listener_refuses() {
    let mut c = Connections::new("test", 1, false);
    let (client, read) = oneshot::channel();
    let (tx, outcome) = oneshot::channel();
    assert!(c.make_room());
    c.spawn(waiting_task(read, tx));
    task::yield_now().await;
    assert!(!c.make_room());
    client.send(()).unwrap();
    assert_eq!(outcome.await.unwrap(), "read");
    reap_until(&mut c, 0).await;
    assert!(c.make_room());
}
