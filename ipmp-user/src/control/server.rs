//! Server side: the control socket actor. It owns the listening socket, reads request lines,
//! refuses mutating requests from non-root peers, and hands the rest to the daemon as
//! [`ControlCall`]s; the daemon answers through the call's oneshot.

use std::{
    fs,
    io::{self, ErrorKind},
    os::unix::{
        fs::{DirBuilderExt as _, FileTypeExt as _, MetadataExt as _, PermissionsExt as _},
        net::{UnixListener as StdUnixListener, UnixStream as StdUnixStream},
    },
    path::{Path, PathBuf},
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::{UnixListener, UnixStream, unix::OwnedWriteHalf},
    sync::{broadcast, mpsc, oneshot},
};
use tracing::{debug, warn};

use super::protocol::{ControlError, MAX_REQUEST_LINE, ProbeLine, Request, Response};
use crate::listener::{Connections, Limits, Slot};

/// The control socket's limits. A local user must not be able to exhaust the daemon's file
/// descriptors (at most this many connections; past it, a new one takes the slot of the one
/// waiting longest on its client), nor hold a slot by sending slowly.
pub const LIMITS: Limits = Limits {
    max_connections: 64,
    idle_timeout: Duration::from_secs(60),
    request_timeout: Duration::from_secs(5),
    write_timeout: Duration::from_secs(10),
};

/// Accepts between two yields to the connections' tasks; well below the cap, so that a new
/// connection is read before enough newer ones arrive to make it the oldest.
const YIELD_EVERY: usize = 16;

/// Who is on the other end of a connection (SO_PEERCRED).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    pub uid: u32,
    /// 0 when the kernel did not report it.
    pub pid: i32,
}

/// One request for the daemon to answer through `reply`. Mutating requests arrive here only from
/// root; the daemon need not check again.
#[derive(Debug)]
pub struct ControlCall {
    pub request: Request,
    pub peer: PeerCred,
    pub reply: oneshot::Sender<Response>,
}

/// Whether `peer` may make `request`; the error is the message sent back.
pub fn authorize(request: &Request, peer: PeerCred) -> Result<(), String> {
    if request.is_mutating() && peer.uid != 0 {
        return Err(format!(
            "{} needs root: run it as root (you are uid {})",
            request.name(),
            peer.uid
        ));
    }
    Ok(())
}

/// The listening control socket. Dropping it (or the future of [`ControlServer::run`]) removes
/// the socket file, unless another process has replaced it since.
#[derive(Debug)]
pub struct ControlServer {
    listener: Option<StdUnixListener>,
    path: PathBuf,
    /// (st_dev, st_ino) of the socket file we created.
    identity: Option<(u64, u64)>,
    limits: Limits,
}

impl ControlServer {
    /// Listens on `path`: creates the parent directory (0755) if missing, replaces a stale socket
    /// that nobody answers on, refuses when another ipmpd answers, and makes the socket 0666 so
    /// unprivileged `ipmpstat` works (mutating requests are checked per peer).
    pub fn bind(path: &Path) -> Result<Self, ControlError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)
                .map_err(|source| ControlError::CreateDir {
                    path: parent.to_path_buf(),
                    source,
                })?;
        }
        let io_err = |source| ControlError::Io {
            path: path.to_path_buf(),
            source,
        };
        match fs::symlink_metadata(path) {
            Ok(meta) if !meta.file_type().is_socket() => {
                return Err(ControlError::NotASocket {
                    path: path.to_path_buf(),
                });
            }
            Ok(_) => match StdUnixStream::connect(path) {
                Ok(_) => {
                    return Err(ControlError::AlreadyRunning {
                        path: path.to_path_buf(),
                    });
                }
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                    debug!(path = %path.display(), "removing stale control socket");
                    match fs::remove_file(path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == ErrorKind::NotFound => {}
                        Err(e) => return Err(io_err(e)),
                    }
                }
                Err(e) => return Err(io_err(e)),
            },
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(e)),
        }
        let bind_err = |source| ControlError::Bind {
            path: path.to_path_buf(),
            source,
        };
        let listener = StdUnixListener::bind(path).map_err(bind_err)?;
        let mut server = ControlServer {
            listener: None,
            path: path.to_path_buf(),
            identity: None,
            limits: LIMITS,
        };
        // From here on, dropping `server` removes the file on every error path.
        let meta = fs::symlink_metadata(path).map_err(io_err)?;
        server.identity = Some((meta.dev(), meta.ino()));
        fs::set_permissions(path, fs::Permissions::from_mode(0o666)).map_err(io_err)?;
        listener.set_nonblocking(true).map_err(io_err)?;
        server.listener = Some(listener);
        Ok(server)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves with `limits` instead of [`LIMITS`].
    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Serves connections until the receiving side of `tx` is dropped, then removes the socket
    /// file. Each connection runs in its own task; connection errors are logged, never fatal.
    /// `probes` feeds [`Request::Probes`] subscribers.
    pub async fn run(
        mut self,
        tx: mpsc::Sender<ControlCall>,
        probes: broadcast::Sender<ProbeLine>,
    ) {
        let Some(std_listener) = self.listener.take() else {
            return;
        };
        let listener = match UnixListener::from_std(std_listener) {
            Ok(l) => l,
            Err(e) => {
                warn!(path = %self.path.display(), error = %e, "control socket: cannot register with the runtime");
                return;
            }
        };
        let limits = self.limits;
        let mut connections = Connections::new("control", limits.max_connections, true);
        let mut accepted_since_yield = 0;
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        if !connections.make_room() {
                            refuse(&stream, limits.max_connections);
                            continue;
                        }
                        let (tx, probes) = (tx.clone(), probes.clone());
                        connections.spawn(|slot| serve_connection(stream, slot, limits, tx, probes));
                        // Now and then, let the new connections read what their clients sent
                        // before accepting more: in a flood, a client whose request is there
                        // must not be taken for one that waits (yielding after every accept
                        // would slow the draining of the flood).
                        accepted_since_yield += 1;
                        if accepted_since_yield >= YIELD_EVERY {
                            accepted_since_yield = 0;
                            tokio::task::yield_now().await;
                        }
                    }
                    Err(e) => {
                        warn!(error = %e, "control socket: accept failed");
                        // EMFILE and friends persist: do not spin.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                () = connections.reap() => {}
                () = tx.closed() => {
                    debug!("control socket: daemon no longer takes calls, closing");
                    break;
                }
            }
        }
    }

    /// Stops listening and removes the socket file now (same as dropping).
    pub fn close(self) {
        drop(self);
    }

    fn remove_socket_file(&self) {
        let Some(identity) = self.identity else {
            return;
        };
        // Only remove the file we created: a newer ipmpd may have replaced it.
        match fs::symlink_metadata(&self.path) {
            Ok(meta) if (meta.dev(), meta.ino()) == identity => {
                if let Err(e) = fs::remove_file(&self.path) {
                    warn!(path = %self.path.display(), error = %e, "cannot remove the control socket");
                }
            }
            Ok(_) => debug!(path = %self.path.display(), "control socket was replaced; leaving it"),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => {
                warn!(path = %self.path.display(), error = %e, "cannot check the control socket")
            }
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.remove_socket_file();
    }
}

/// Closes a connection the cap leaves no room for, telling the client why (a fresh socket's
/// buffer takes the line at once; if not, the client just sees the close).
fn refuse(stream: &UnixStream, limit: usize) {
    let response = Response::Error {
        message: format!(
            "ipmpd is serving {limit} control connections, all busy: try again in a moment"
        ),
    };
    if let Ok(line) = encode(&response) {
        let _ = stream.try_write(&line);
    }
}

async fn serve_connection(
    stream: UnixStream,
    slot: Slot,
    limits: Limits,
    tx: mpsc::Sender<ControlCall>,
    probes: broadcast::Sender<ProbeLine>,
) {
    let peer = match stream.peer_cred() {
        Ok(cred) => PeerCred {
            uid: cred.uid(),
            pid: cred.pid().unwrap_or(0),
        },
        Err(e) => {
            warn!(error = %e, "control socket: cannot read peer credentials, closing");
            return;
        }
    };
    let (read, write) = stream.into_split();
    let mut conn = Conn {
        write,
        limits,
        peer,
    };
    match serve_requests(&mut conn, BufReader::new(read), &slot, &tx, &probes).await {
        Ok(Closed::ByClient) => {}
        Ok(Closed::Evicted(message)) => {
            // Counted by the listener's one line for the flood, not logged one by one.
            let _ = conn.send(&Response::Error { message }).await;
        }
        Ok(Closed::Told(message)) => {
            debug!(
                uid = peer.uid,
                pid = peer.pid,
                "control connection closed: {message}"
            );
            // The client may be gone already; it was told if it still listens.
            let _ = conn.send(&Response::Error { message }).await;
        }
        Err(e) => {
            debug!(uid = peer.uid, pid = peer.pid, error = %e, "control connection ended with an error");
        }
    }
}

/// The writing side of a connection and what it answers by.
struct Conn {
    write: OwnedWriteHalf,
    limits: Limits,
    peer: PeerCred,
}

impl Conn {
    /// Sends one response line; a client that does not take it within the write timeout is
    /// given up.
    async fn send(&mut self, response: &Response) -> io::Result<()> {
        let line = encode(response)?;
        let write = async {
            self.write.write_all(&line).await?;
            self.write.flush().await
        };
        tokio::time::timeout(self.limits.write_timeout, write)
            .await
            .map_err(|_| {
                io::Error::new(
                    ErrorKind::TimedOut,
                    "client did not take the response in time",
                )
            })?
    }
}

/// Why a connection ends, when not on an I/O error.
enum Closed {
    /// The client closed it.
    ByClient,
    /// The client broke a rule: why, told to it before closing.
    Told(String),
    /// It gave its slot to a newer connection: what it is told.
    Evicted(String),
}

/// Serves request after request until the client closes or breaks a rule.
async fn serve_requests(
    conn: &mut Conn,
    mut reader: BufReader<tokio::net::unix::OwnedReadHalf>,
    slot: &Slot,
    tx: &mpsc::Sender<ControlCall>,
    probes: &broadcast::Sender<ProbeLine>,
) -> io::Result<Closed> {
    let limits = conn.limits;
    let peer = conn.peer;
    let evicted = || {
        Closed::Evicted(format!(
            "closed to make room: ipmpd serves {} control connections at once and this one \
             waited longest for a request",
            limits.max_connections
        ))
    };
    loop {
        // Idle until the first byte of the next request.
        let first = async { reader.fill_buf().await.map(|b| b.is_empty()) };
        match slot
            .waiting(tokio::time::timeout(limits.idle_timeout, first))
            .await
        {
            None => return Ok(evicted()),
            Some(Err(_)) => {
                return Ok(Closed::Told(format!(
                    "no request for {} s",
                    limits.idle_timeout.as_secs()
                )));
            }
            Some(Ok(eof)) => {
                if eof? {
                    return Ok(Closed::ByClient);
                }
            }
        }
        // Then the whole line, at most MAX_REQUEST_LINE bytes, within the request timeout.
        let mut line = Vec::new();
        let limited = (&mut reader).take(MAX_REQUEST_LINE as u64 + 1);
        let n = match slot
            .waiting(tokio::time::timeout(
                limits.request_timeout,
                read_line(limited, &mut line),
            ))
            .await
        {
            None => return Ok(evicted()),
            Some(Err(_)) => {
                return Ok(Closed::Told(format!(
                    "request not complete within {:?} of its first byte",
                    limits.request_timeout
                )));
            }
            Some(Ok(n)) => n?,
        };
        if n == 0 {
            return Ok(Closed::ByClient);
        }
        let complete = line.last() == Some(&b'\n');
        if complete {
            line.pop();
        }
        if line.len() > MAX_REQUEST_LINE {
            let message = format!("request line longer than {MAX_REQUEST_LINE} bytes");
            warn!(
                uid = peer.uid,
                pid = peer.pid,
                "control socket: {message}, closing"
            );
            return Ok(Closed::Told(message));
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            if complete {
                continue;
            }
            return Ok(Closed::ByClient);
        }
        if serde_json::from_slice::<Request>(&line).is_ok_and(|r| r == Request::Probes) {
            debug!(uid = peer.uid, pid = peer.pid, "probe stream subscribed");
            return stream_probes(conn, probes.subscribe())
                .await
                .map(|()| Closed::ByClient);
        }
        let response = answer(&line, peer, tx).await;
        conn.send(&response).await?;
        if !complete {
            // EOF right after the last request.
            return Ok(Closed::ByClient);
        }
    }
}

/// Sends every probe line until the client goes away or ipmpd stops. A reader too slow for
/// the daemon's pace skips lines rather than slowing the daemon.
async fn stream_probes(conn: &mut Conn, mut rx: broadcast::Receiver<ProbeLine>) -> io::Result<()> {
    loop {
        match rx.recv().await {
            Ok(line) => conn.send(&Response::Probe(line)).await?,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                debug!(skipped = n, "probe stream reader too slow");
            }
            Err(broadcast::error::RecvError::Closed) => return Ok(()),
        }
    }
}

async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    mut reader: R,
    line: &mut Vec<u8>,
) -> io::Result<usize> {
    reader.read_until(b'\n', line).await
}

fn encode(response: &Response) -> io::Result<Vec<u8>> {
    let mut line = serde_json::to_vec(response).map_err(io::Error::other)?;
    line.push(b'\n');
    Ok(line)
}

async fn answer(line: &[u8], peer: PeerCred, tx: &mpsc::Sender<ControlCall>) -> Response {
    let request: Request = match serde_json::from_slice(line) {
        Ok(r) => r,
        Err(e) => {
            debug!(uid = peer.uid, pid = peer.pid, error = %e, "malformed control request");
            return Response::Error {
                message: format!("malformed request: {e}"),
            };
        }
    };
    debug!(
        uid = peer.uid,
        pid = peer.pid,
        request = request.name(),
        "control request"
    );
    if let Err(message) = authorize(&request, peer) {
        return Response::Error { message };
    }
    let (reply, answer) = oneshot::channel();
    let call = ControlCall {
        request,
        peer,
        reply,
    };
    if tx.send(call).await.is_err() {
        return Response::Error {
            message: "ipmpd is shutting down".to_owned(),
        };
    }
    answer.await.unwrap_or_else(|_| Response::Error {
        message: "ipmpd dropped the request without answering".to_owned(),
    })
}
