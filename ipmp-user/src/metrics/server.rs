//! The metrics listener: a minimal HTTP/1.x responder for `GET /metrics`. Each connection is
//! its own task with deadlines, so a slow or silent client holds neither the daemon nor other
//! scrapes; the snapshot is asked of the daemon like `ipmpstat` does, over its control calls.

use std::{io, net::SocketAddr, time::Duration};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::{mpsc, oneshot},
};
use tracing::{debug, warn};

use super::{encode::CONTENT_TYPE, events::Events};
use crate::{
    control::{ControlCall, PeerCred, Request as ControlRequest, Response},
    listener::{Connections, Limits},
};

/// Scrapes served at once (more are closed at accept); a client must send its request within
/// the request timeout and take the response within the write timeout.
const LIMITS: Limits = Limits {
    max_connections: 16,
    idle_timeout: Duration::from_secs(5),
    request_timeout: Duration::from_secs(5),
    write_timeout: Duration::from_secs(10),
};
/// A client must send its request within this.
const READ_TIMEOUT: Duration = LIMITS.request_timeout;
/// A client must take the response within this.
const WRITE_TIMEOUT: Duration = LIMITS.write_timeout;
/// Longest request head (request line and headers).
const MAX_HEAD: usize = 8 * 1024;
/// The daemon must answer for the snapshot within this.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error(
        "cannot listen for metrics on {addr}: {source} (choose another metrics.listen in the \
         config, or remove [metrics])"
    )]
    Bind { addr: SocketAddr, source: io::Error },
}

/// What a well-formed request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// `GET /metrics` (`head`: HEAD, headers only).
    Metrics { head: bool },
}

/// A refused request: status line and a one-line reason for the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub status: &'static str,
    pub reason: &'static str,
}

const fn refuse(status: &'static str, reason: &'static str) -> Refusal {
    Refusal { status, reason }
}

/// Reads the request line of `head` (the bytes up to the blank line; headers are ignored).
pub fn parse_request(head: &[u8]) -> Result<Request, Refusal> {
    let bad = refuse("400 Bad Request", "malformed request");
    let text = std::str::from_utf8(head).map_err(|_| bad)?;
    let line = text.lines().next().ok_or(bad)?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad);
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return Err(bad);
    }
    let head = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Err(refuse("405 Method Not Allowed", "only GET and HEAD")),
    };
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    if path != "/metrics" {
        return Err(refuse("404 Not Found", "the metrics are at /metrics"));
    }
    Ok(Request::Metrics { head })
}

/// The bound listener; [`MetricsServer::run`] serves it.
#[derive(Debug)]
pub struct MetricsServer {
    listener: std::net::TcpListener,
    addr: SocketAddr,
}

impl MetricsServer {
    /// Listens on `addr` (checked against `allow_remote` by the config).
    pub fn bind(addr: SocketAddr) -> Result<Self, MetricsError> {
        let err = |source| MetricsError::Bind { addr, source };
        let listener = std::net::TcpListener::bind(addr).map_err(err)?;
        listener.set_nonblocking(true).map_err(err)?;
        let addr = listener.local_addr().map_err(err)?;
        Ok(Self { listener, addr })
    }

    /// The address bound (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves scrapes until `calls` closes (the daemon stopped). Snapshots are asked through
    /// `calls`; `events` are the daemon's event counts.
    pub async fn run(self, calls: mpsc::Sender<ControlCall>, events: Events) {
        let listener = match TcpListener::from_std(self.listener) {
            Ok(l) => l,
            Err(e) => {
                warn!(addr = %self.addr, error = %e, "metrics: cannot register the listener with the runtime");
                return;
            }
        };
        // Scrapes are short: the cap refuses rather than evicts.
        let mut connections = Connections::new("metrics", LIMITS.max_connections, false);
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        if !connections.make_room() {
                            continue;
                        }
                        let (calls, events) = (calls.clone(), events.clone());
                        connections.spawn(|_| serve(stream, peer, calls, events));
                    }
                    Err(e) => {
                        warn!(error = %e, "metrics: accept failed");
                        // EMFILE and friends persist: do not spin.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                () = connections.reap() => {}
                () = calls.closed() => break,
            }
        }
    }
}

async fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    calls: mpsc::Sender<ControlCall>,
    events: Events,
) {
    let head = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(Some(head))) => head,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            debug!(%peer, error = %e, "metrics: reading the request failed");
            return;
        }
        Err(_) => {
            debug!(%peer, "metrics: no request within {READ_TIMEOUT:?}, closing");
            let r = refusal(refuse("408 Request Timeout", "no request in time"));
            let _ = tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&r)).await;
            return;
        }
    };
    let response = match head
        .map_err(|_| {
            refuse(
                "431 Request Header Fields Too Large",
                "request head too long",
            )
        })
        .and_then(|h| parse_request(&h))
    {
        Ok(Request::Metrics { head }) => match scrape(&calls, &events).await {
            Ok(body) => ok(&body, head),
            Err(refused) => refusal(refused),
        },
        Err(refused) => {
            debug!(%peer, status = refused.status, "metrics: request refused");
            refusal(refused)
        }
    };
    match tokio::time::timeout(WRITE_TIMEOUT, async {
        stream.write_all(&response).await?;
        stream.shutdown().await
    })
    .await
    {
        Ok(Ok(())) => {}
        Ok(Err(e)) => debug!(%peer, error = %e, "metrics: writing the response failed"),
        Err(_) => debug!(%peer, "metrics: client too slow to take the response, closing"),
    }
}

/// The request head up to its blank line: `None` when the client closed first, `Err(())`
/// inside when it is longer than [`MAX_HEAD`].
async fn read_head(stream: &mut TcpStream) -> io::Result<Option<Result<Vec<u8>, ()>>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = find_blank_line(&head) {
            head.truncate(end);
            return Ok(Some(Ok(head)));
        }
        if head.len() > MAX_HEAD {
            return Ok(Some(Err(())));
        }
    }
}

fn find_blank_line(b: &[u8]) -> Option<usize> {
    b.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .or_else(|| b.windows(2).position(|w| w == b"\n\n"))
}

/// The exposition, from a fresh snapshot of the daemon.
async fn scrape(calls: &mpsc::Sender<ControlCall>, events: &Events) -> Result<String, Refusal> {
    let unavailable = refuse("503 Service Unavailable", "ipmpd did not give its status");
    let (reply, answer) = oneshot::channel();
    let call = ControlCall {
        request: ControlRequest::Status,
        peer: PeerCred {
            uid: nix::unistd::geteuid().as_raw(),
            pid: std::process::id().try_into().unwrap_or(0),
        },
        reply,
    };
    let snapshot = tokio::time::timeout(SNAPSHOT_TIMEOUT, async {
        calls.send(call).await.ok()?;
        answer.await.ok()
    })
    .await
    .ok()
    .flatten()
    .ok_or(unavailable)?;
    match snapshot {
        Response::Status(s) => Ok(super::encode::encode(
            s,
            events.counts(),
            crate::logging::dropped_lines(),
        )),
        _ => Err(unavailable),
    }
}

fn ok(body: &str, head_only: bool) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        r.extend_from_slice(body.as_bytes());
    }
    r
}

fn refusal(r: Refusal) -> Vec<u8> {
    let body = format!("{}\n", r.reason);
    let allow = if r.status.starts_with("405") {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    format!(
        "HTTP/1.1 {}\r\nContent-Type: text/plain; charset=utf-8\r\n{allow}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        r.status,
        body.len()
    )
    .into_bytes()
}
