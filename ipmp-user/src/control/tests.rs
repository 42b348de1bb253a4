use std::{
    fs,
    io::{BufRead as _, BufReader, Write as _},
    os::unix::{fs::PermissionsExt as _, net::UnixListener as StdUnixListener},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

use tokio::sync::mpsc;

use super::*;

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ipmp-control-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn sample_snapshot() -> Snapshot {
    Snapshot {
        pid: 4242,
        version: "0.1.0".into(),
        uptime_ms: 61_500,
        groups: vec![GroupStatus {
            interface: "ipmp0".into(),
            name: "ipmp0".into(),
            ifindex: 7,
            state: GroupState::Degraded,
            fdt_ms: None,
            failback: true,
            n_buckets: 256,
            hash_seed: 0xdead_beef,
            members: vec![MemberStatus {
                name: "m0".into(),
                ifindex: 3,
                mac: "02:00:00:00:00:01".into(),
                active: true,
                flags: MemberFlags {
                    v4_multicast: true,
                    ..MemberFlags::default()
                },
                link: LinkState::Up,
                probe: ProbeState::Disabled,
                state: MemberState::Ok,
                test_addresses: vec!["198.51.100.21".into()],
                buckets: 256,
                bound_addresses: 1,
                tx_packets: u64::MAX,
                tx_bytes: 1 << 40,
                rx_packets: 7,
                rx_bytes: 1 << 41,
                counters: [("rx-ipmp".to_owned(), 7)].into(),
                probes: Vec::new(),
                probe_forged: 0,
                probe_totals: Default::default(),
            }],
            addresses: vec![AddressStatus {
                address: "198.51.100.10".into(),
                prefix_len: 24,
                up: true,
                inbound: Some("m0".into()),
                outbound: vec!["m0".into()],
            }],
            attachments: Vec::new(),
        }],
    }
}

/// Answers like a daemon would: status → the sample, reload → ok, offline → an error.
fn spawn_fake_daemon(
    mut rx: mpsc::Receiver<ControlCall>,
) -> tokio::task::JoinHandle<Vec<PeerCred>> {
    tokio::spawn(async move {
        let mut peers = Vec::new();
        while let Some(call) = rx.recv().await {
            peers.push(call.peer);
            let response = match call.request {
                Request::Status => Response::Status(sample_snapshot()),
                Request::Reload => Response::Ok {
                    message: "configuration reloaded".into(),
                },
                Request::Offline { interface } | Request::Online { interface } => Response::Error {
                    message: format!("{interface}: no such member"),
                },
                Request::Probes => Response::Error {
                    message: "streamed by the server".into(),
                },
            };
            let _ = call.reply.send(response);
        }
        peers
    })
}

fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

#[test]
fn wire_forms_are_tagged_lowercase() {
    let req = Request::Offline {
        interface: "m0".into(),
    };
    assert_eq!(
        serde_json::to_string(&req).unwrap(),
        r#"{"request":"offline","interface":"m0"}"#
    );
    assert_eq!(
        serde_json::to_string(&Request::Status).unwrap(),
        r#"{"request":"status"}"#
    );
    let ok = Response::Ok {
        message: "done".into(),
    };
    assert_eq!(
        serde_json::to_string(&ok).unwrap(),
        r#"{"response":"ok","message":"done"}"#
    );
    let status = serde_json::to_value(Response::Status(sample_snapshot())).unwrap();
    assert_eq!(status["response"], "status");
    assert_eq!(status["pid"], 4242);
    assert_eq!(status["groups"][0]["state"], "degraded");
    assert_eq!(status["groups"][0]["members"][0]["probe"], "disabled");
    assert_eq!(status["groups"][0]["fdt_ms"], serde_json::Value::Null);
    let back: Response = serde_json::from_value(status).unwrap();
    assert_eq!(back, Response::Status(sample_snapshot()));
}

#[test]
fn only_root_may_mutate() {
    let user = PeerCred { uid: 1000, pid: 1 };
    let root = PeerCred { uid: 0, pid: 1 };
    assert!(authorize(&Request::Status, user).is_ok());
    assert!(authorize(&Request::Reload, root).is_ok());
    for req in [
        Request::Reload,
        Request::Offline {
            interface: "m0".into(),
        },
        Request::Online {
            interface: "m0".into(),
        },
    ] {
        let err = authorize(&req, user).unwrap_err();
        assert!(err.contains("root") && err.contains(req.name()), "{err}");
    }
}

#[test]
fn response_helpers_map_errors() {
    let err = Response::Error {
        message: "m9: no such member".into(),
    };
    let ControlError::Daemon { message } = err.clone().into_message().unwrap_err() else {
        panic!("expected a daemon error");
    };
    assert_eq!(message, "m9: no such member");
    assert!(matches!(
        Response::Ok {
            message: String::new()
        }
        .into_snapshot(),
        Err(ControlError::Unexpected { .. })
    ));
    assert_eq!(
        Response::Status(sample_snapshot()).into_snapshot().unwrap(),
        sample_snapshot()
    );
}

#[tokio::test]
async fn round_trip_through_a_real_socket() {
    let dir = TempDir::new();
    // The parent directory does not exist yet: bind creates it.
    let path = dir.path().join("run/ipmpd.sock");
    let server = ControlServer::bind(&path).unwrap();
    assert_eq!(server.path(), path);
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o666);
    let dir_mode = fs::metadata(path.parent().unwrap())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir_mode & 0o700, 0o700);
    let (tx, rx) = mpsc::channel(4);
    let daemon = spawn_fake_daemon(rx);
    let serving = tokio::spawn(server.run(tx, tokio::sync::broadcast::channel(16).0));

    let snapshot = request(&path, &Request::Status)
        .await
        .unwrap()
        .into_snapshot()
        .unwrap();
    assert_eq!(snapshot, sample_snapshot());

    // The blocking client sees the same thing.
    let p = path.clone();
    let blocking = tokio::task::spawn_blocking(move || status_blocking(&p))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(blocking, sample_snapshot());

    // Mutating requests reach the daemon only from root.
    let reload = request(&path, &Request::Reload).await.unwrap();
    if euid() == 0 {
        assert_eq!(reload.into_message().unwrap(), "configuration reloaded");
        let offline = request(
            &path,
            &Request::Offline {
                interface: "m9".into(),
            },
        )
        .await
        .unwrap();
        let err = offline.into_message().unwrap_err();
        assert_eq!(err.to_string(), "m9: no such member");
    } else {
        let err = reload.into_message().unwrap_err().to_string();
        assert!(err.contains("needs root"), "{err}");
    }

    serving.abort();
    let _ = serving.await;
    // Dropping the run future dropped the server, which removed its socket.
    assert!(!path.exists());
    let peers = daemon.await.unwrap();
    assert!(peers.len() >= 2);
    assert!(
        peers
            .iter()
            .all(|p| p.uid == euid() && p.pid == std::process::id() as i32)
    );
}

#[tokio::test]
async fn several_requests_on_one_connection_and_bad_json_is_not_fatal() {
    let dir = TempDir::new();
    let path = dir.path().join("ipmpd.sock");
    let server = ControlServer::bind(&path).unwrap();
    let (tx, rx) = mpsc::channel(4);
    let _daemon = spawn_fake_daemon(rx);
    let serving = tokio::spawn(server.run(tx, tokio::sync::broadcast::channel(16).0));

    let p = path.clone();
    let lines = tokio::task::spawn_blocking(move || {
        let mut stream = std::os::unix::net::UnixStream::connect(&p).unwrap();
        stream
            .write_all(b"{\"request\":\"nonsense\"}\n\n{\"request\":\"status\"}\n")
            .unwrap();
        let mut reader = BufReader::new(stream);
        let mut first = String::new();
        reader.read_line(&mut first).unwrap();
        let mut second = String::new();
        reader.read_line(&mut second).unwrap();
        (first, second)
    })
    .await
    .unwrap();
    let first: Response = serde_json::from_str(&lines.0).unwrap();
    let Response::Error { message } = first else {
        panic!("expected an error, got {first:?}");
    };
    assert!(message.starts_with("malformed request"), "{message}");
    let second: Response = serde_json::from_str(&lines.1).unwrap();
    assert_eq!(second, Response::Status(sample_snapshot()));
    serving.abort();
}

#[tokio::test]
async fn oversized_request_line_is_refused() {
    let dir = TempDir::new();
    let path = dir.path().join("ipmpd.sock");
    let server = ControlServer::bind(&path).unwrap();
    let (tx, rx) = mpsc::channel(4);
    let daemon = spawn_fake_daemon(rx);
    let serving = tokio::spawn(server.run(tx, tokio::sync::broadcast::channel(16).0));

    let p = path.clone();
    let answer = tokio::task::spawn_blocking(move || {
        let stream = std::os::unix::net::UnixStream::connect(&p).unwrap();
        let mut writer = stream.try_clone().unwrap();
        // The server stops reading after the limit, so write from another thread and ignore EPIPE.
        let w = std::thread::spawn(move || {
            let mut big = vec![b'x'; MAX_REQUEST_LINE + 4096];
            big.push(b'\n');
            let _ = writer.write_all(&big);
        });
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let mut rest = String::new();
        let eof = reader.read_line(&mut rest).map(|n| n == 0).unwrap_or(true);
        let _ = w.join();
        (line, eof)
    })
    .await
    .unwrap();
    let response: Response = serde_json::from_str(&answer.0).unwrap();
    assert_eq!(
        response,
        Response::Error {
            message: format!("request line longer than {MAX_REQUEST_LINE} bytes")
        }
    );
    assert!(
        answer.1,
        "the server closes the connection after an oversized line"
    );
    serving.abort();
    let _ = serving.await;
    // Nothing reached the daemon.
    assert!(daemon.await.unwrap().is_empty());
}

#[tokio::test]
async fn client_rejects_an_oversized_response() {
    let dir = TempDir::new();
    let path = dir.path().join("huge.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt as _;
        let (mut s, _) = listener.accept().await.unwrap();
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..(MAX_RESPONSE_LINE >> 20) + 1 {
            if s.write_all(&chunk).await.is_err() {
                break;
            }
        }
    });
    let err = request(&path, &Request::Status).await.unwrap_err();
    assert!(matches!(err, ControlError::LineTooLong { .. }), "{err}");
    writer.abort();
}

#[test]
fn stale_socket_is_replaced() {
    let dir = TempDir::new();
    let path = dir.path().join("ipmpd.sock");
    // A socket file nobody listens on any more (a crashed ipmpd).
    drop(StdUnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let server = ControlServer::bind(&path).unwrap();
    assert!(path.exists());
    server.close();
    assert!(!path.exists());
}

#[test]
fn live_socket_is_not_stolen() {
    let dir = TempDir::new();
    let path = dir.path().join("ipmpd.sock");
    let _other = StdUnixListener::bind(&path).unwrap();
    let err = ControlServer::bind(&path).unwrap_err();
    assert!(matches!(err, ControlError::AlreadyRunning { .. }));
    assert_eq!(
        err.to_string(),
        format!("another ipmpd is running ({} answers)", path.display())
    );
    assert!(path.exists(), "the other daemon's socket must stay");
}

#[test]
fn regular_file_is_not_removed() {
    let dir = TempDir::new();
    let path = dir.path().join("ipmpd.sock");
    fs::write(&path, b"not a socket").unwrap();
    let err = ControlServer::bind(&path).unwrap_err();
    assert!(matches!(err, ControlError::NotASocket { .. }), "{err}");
    assert_eq!(fs::read(&path).unwrap(), b"not a socket");
}

#[test]
fn drop_leaves_a_replaced_socket_alone() {
    let dir = TempDir::new();
    let path = dir.path().join("ipmpd.sock");
    let server = ControlServer::bind(&path).unwrap();
    // Someone removed our socket and a newer daemon bound the path.
    fs::remove_file(&path).unwrap();
    let _newer = StdUnixListener::bind(&path).unwrap();
    drop(server);
    assert!(path.exists());
}

#[tokio::test]
async fn run_returns_and_cleans_up_when_the_daemon_stops() {
    let dir = TempDir::new();
    let path = dir.path().join("ipmpd.sock");
    let server = ControlServer::bind(&path).unwrap();
    let (tx, rx) = mpsc::channel(1);
    drop(rx);
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        server.run(tx, tokio::sync::broadcast::channel(16).0),
    )
    .await
    .expect("run returns once the receiver is gone");
    assert!(!path.exists());
}

#[tokio::test]
async fn missing_socket_tells_how_to_fix_it() {
    let dir = TempDir::new();
    let path = dir.path().join("absent.sock");
    let err = request(&path, &Request::Status).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot reach ipmpd at {}: is ipmpd running? (--socket PATH to choose another socket)",
            path.display()
        )
    );
    let err = request_blocking(&path, &Request::Status).unwrap_err();
    assert!(matches!(err, ControlError::NotRunning { .. }));
}

fn probe_line(seq: u16, lost: bool) -> ProbeLine {
    ProbeLine {
        sent_unix_ns: 1_700_000_000_000_000_000 + u64::from(seq),
        group: "ipmp0".into(),
        interface: "m0".into(),
        family: "inet".into(),
        seq,
        target: Some("198.51.100.1".into()),
        lost,
        netrtt_us: (!lost).then_some(120),
        rtt_us: (!lost).then_some(180),
        rttavg_us: Some(150),
        rttdev_us: Some(20),
    }
}

#[tokio::test]
async fn probe_stream_delivers_every_probe_until_ipmpd_stops() {
    let dir = TempDir::new();
    let path = dir.path().join("ipmpd.sock");
    let server = ControlServer::bind(&path).unwrap();
    let (tx, rx) = mpsc::channel(4);
    let _daemon = spawn_fake_daemon(rx);
    let (probes, _) = tokio::sync::broadcast::channel(64);
    let serving = tokio::spawn(server.run(tx, probes.clone()));
    let p = path.clone();
    let reader = tokio::task::spawn_blocking(move || {
        let mut stream = subscribe_probes(&p).unwrap();
        let got: Vec<_> = (&mut stream).take(3).collect();
        (got, stream)
    });
    // Publish until the subscriber is there, then three lines.
    while probes.receiver_count() == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    for (seq, lost) in [(1, false), (2, true), (3, false)] {
        probes.send(probe_line(seq, lost)).unwrap();
    }
    let (got, mut stream) = reader.await.unwrap();
    let got: Vec<ProbeLine> = got.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        got,
        vec![
            probe_line(1, false),
            probe_line(2, true),
            probe_line(3, false)
        ]
    );
    // A subscription is not a mutating request, and the stream ends when ipmpd goes away.
    assert!(!Request::Probes.is_mutating());
    drop(probes);
    serving.abort();
    let _ = serving.await;
    let end = tokio::task::spawn_blocking(move || stream.next())
        .await
        .unwrap();
    assert!(matches!(end, Some(Err(_))), "{end:?}");
}

// Hostile clients: each gets an error line or a close, and never holds up another client.

/// Short limits, so that the tests wait for milliseconds rather than seconds.
const TEST_LIMITS: crate::listener::Limits = crate::listener::Limits {
    max_connections: 4,
    idle_timeout: std::time::Duration::from_millis(400),
    request_timeout: std::time::Duration::from_millis(300),
    write_timeout: std::time::Duration::from_secs(2),
};

/// A server with [`TEST_LIMITS`] on a temp-dir socket, answered by the fake daemon.
struct Served {
    _dir: TempDir,
    path: PathBuf,
    serving: tokio::task::JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.serving.abort();
    }
}

fn serve_with(rx_daemon: impl FnOnce(mpsc::Receiver<ControlCall>)) -> Served {
    let dir = TempDir::new();
    let path = dir.path().join("ipmpd.sock");
    let server = ControlServer::bind(&path).unwrap().with_limits(TEST_LIMITS);
    let (tx, rx) = mpsc::channel(4);
    rx_daemon(rx);
    let serving = tokio::spawn(server.run(tx, tokio::sync::broadcast::channel(16).0));
    Served {
        _dir: dir,
        path,
        serving,
    }
}

fn served() -> Served {
    serve_with(|rx| drop(spawn_fake_daemon(rx)))
}

/// Reads one response line and then whether the server closed the connection.
fn read_response(stream: std::os::unix::net::UnixStream) -> (Response, bool) {
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let response = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    let mut rest = String::new();
    let closed = reader.read_line(&mut rest).map(|n| n == 0).unwrap_or(false);
    (response, closed)
}

/// What a new connection that sends nothing is told, and whether it is closed then.
async fn silent_response(path: &Path) -> (Response, bool) {
    let p = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        read_response(std::os::unix::net::UnixStream::connect(&p).unwrap())
    })
    .await
    .unwrap()
}

fn error_message(r: Response) -> String {
    match r {
        Response::Error { message } => message,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// A status request on a fresh connection answers, within 2 s.
async fn status_answers(path: &Path) {
    let snapshot = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        request(path, &Request::Status),
    )
    .await
    .expect("status within 2 s")
    .unwrap()
    .into_snapshot()
    .unwrap();
    assert_eq!(snapshot, sample_snapshot());
}

#[tokio::test]
async fn one_byte_a_second_gets_a_timeout_error_and_others_are_served_meanwhile() {
    let s = served();
    let p = s.path.clone();
    let slow = tokio::task::spawn_blocking(move || {
        let mut stream = std::os::unix::net::UnixStream::connect(&p).unwrap();
        let started = std::time::Instant::now();
        // One byte per 100 ms: each byte is well within any per-read timeout, the request never.
        for b in b"{\"request\":\"status\"}" {
            if stream.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        (read_response(stream), started.elapsed())
    });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    status_answers(&s.path).await;
    let ((response, closed), took) = slow.await.unwrap();
    let message = error_message(response);
    assert!(message.contains("request not complete"), "{message}");
    assert!(closed, "the slow connection is closed");
    assert!(took < std::time::Duration::from_secs(3), "{took:?}");
}

#[tokio::test]
async fn silent_connection_is_closed_with_an_error_after_the_idle_timeout() {
    let s = served();
    let (response, closed) = silent_response(&s.path).await;
    assert!(error_message(response).contains("no request for"));
    assert!(closed);
}

#[tokio::test]
async fn truncated_and_invalid_requests_get_errors() {
    let s = served();
    let p = s.path.clone();
    let answers = tokio::task::spawn_blocking(move || {
        let connect = || std::os::unix::net::UnixStream::connect(&p).unwrap();
        // Truncated, then EOF: answered as malformed.
        let mut a = connect();
        a.write_all(b"{\"request\":\"sta").unwrap();
        a.shutdown(std::net::Shutdown::Write).unwrap();
        // Truncated, then silence: the request timeout.
        let mut b = connect();
        b.write_all(b"{\"request\":\"sta").unwrap();
        // Not JSON, not UTF-8, a JSON array, an unknown request.
        let mut c = connect();
        c.write_all(b"\xff\xfe\x00garbage\n[1,2]\n{\"request\":\"shutdown\"}\n")
            .unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let mut c_lines = Vec::new();
        let mut reader = BufReader::new(c);
        for _ in 0..3 {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            c_lines.push(serde_json::from_str::<Response>(&line).unwrap());
        }
        (read_response(a), read_response(b), c_lines)
    })
    .await
    .unwrap();
    let ((a, a_closed), (b, b_closed), c) = answers;
    assert!(error_message(a).starts_with("malformed request"));
    assert!(a_closed);
    assert!(error_message(b).contains("request not complete"));
    assert!(b_closed);
    for r in c {
        assert!(error_message(r).starts_with("malformed request"));
    }
    status_answers(&s.path).await;
}

#[tokio::test]
async fn a_100_mib_request_is_refused_without_being_read() {
    let s = served();
    let p = s.path.clone();
    let (written, (response, _)) = tokio::task::spawn_blocking(move || {
        let stream = std::os::unix::net::UnixStream::connect(&p).unwrap();
        let mut writer = stream.try_clone().unwrap();
        let w = std::thread::spawn(move || {
            let chunk = vec![b'x'; 1 << 20];
            let mut written = 0usize;
            for _ in 0..100 {
                if writer.write_all(&chunk).is_err() {
                    break;
                }
                written += chunk.len();
            }
            written
        });
        let answer = read_response(stream);
        (w.join().unwrap(), answer)
    })
    .await
    .unwrap();
    assert_eq!(
        error_message(response),
        format!("request line longer than {MAX_REQUEST_LINE} bytes")
    );
    // The server stopped reading at the limit: the writer hit a closed socket after at most
    // the limit plus the socket buffers, far from 100 MiB.
    assert!(written < 16 << 20, "{written} bytes were taken");
    status_answers(&s.path).await;
}

#[tokio::test]
async fn many_connections_at_once_leave_room_for_a_new_client() {
    let s = served();
    let p = s.path.clone();
    // Ten times the cap, all silent: the oldest give way, one by one, to the newer.
    let idle: Vec<_> = tokio::task::spawn_blocking(move || {
        (0..10 * TEST_LIMITS.max_connections)
            .map(|_| std::os::unix::net::UnixStream::connect(&p).unwrap())
            .collect()
    })
    .await
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let started = std::time::Instant::now();
    status_answers(&s.path).await;
    assert!(
        started.elapsed() < TEST_LIMITS.idle_timeout,
        "waited for the idle timeout"
    );
    let closed = tokio::task::spawn_blocking(move || {
        idle.into_iter()
            .take(9 * TEST_LIMITS.max_connections)
            .map(|c| error_message(read_response(c).0))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for message in closed {
        assert!(message.contains("closed to make room"), "{message}");
    }
}

#[tokio::test]
async fn connections_busy_with_the_daemon_are_not_evicted_and_a_new_one_is_refused() {
    // A daemon that holds every call unanswered.
    let (held_tx, mut held_rx) = mpsc::unbounded_channel();
    let s = serve_with(move |mut rx| {
        tokio::spawn(async move {
            while let Some(call) = rx.recv().await {
                let _ = held_tx.send(call);
            }
        });
    });
    let p = s.path.clone();
    let busy: Vec<_> = tokio::task::spawn_blocking(move || {
        (0..TEST_LIMITS.max_connections)
            .map(|_| {
                let mut c = std::os::unix::net::UnixStream::connect(&p).unwrap();
                c.write_all(b"{\"request\":\"status\"}\n").unwrap();
                c
            })
            .collect()
    })
    .await
    .unwrap();
    let mut calls = Vec::new();
    while calls.len() < TEST_LIMITS.max_connections {
        calls.push(held_rx.recv().await.unwrap());
    }
    let (refused, _) = silent_response(&s.path).await;
    assert!(error_message(refused).contains("all busy"));
    // The busy ones get their answers once the daemon gives them.
    for call in calls {
        let _ = call.reply.send(Response::Status(sample_snapshot()));
    }
    let answers = tokio::task::spawn_blocking(move || {
        busy.into_iter()
            .map(|c| {
                let mut reader = BufReader::new(c);
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                serde_json::from_str::<Response>(&line).unwrap()
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert!(
        answers
            .iter()
            .all(|r| *r == Response::Status(sample_snapshot()))
    );
}
