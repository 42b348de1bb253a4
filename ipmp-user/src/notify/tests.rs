use std::{
    ffi::OsStr,
    os::{linux::net::SocketAddrExt as _, unix::net::UnixDatagram},
    time::{Duration, Instant},
};

use super::*;
use crate::group::{Carrier, Event, GroupSpec, MemberSpec};

fn env(socket: &str, usec: &str, pid: &str, our_pid: u32) -> Result<NotifyEnv, NotifyError> {
    NotifyEnv::parse(
        Some(OsStr::new(socket)),
        Some(OsStr::new(usec)),
        Some(OsStr::new(pid)),
        our_pid,
    )
}

#[test]
fn unset_or_empty_socket_means_silent() {
    let e = NotifyEnv::parse(None, None, None, 7).unwrap();
    assert_eq!(e, NotifyEnv::default());
    let e = env("", "", "", 7).unwrap();
    assert_eq!(e.socket, None);
    // A watchdog without a socket to feed it is no watchdog.
    let e = env("", "1000000", "", 7).unwrap();
    assert_eq!(e.watchdog, None);
}

#[test]
fn socket_paths_and_abstract_names() {
    let e = env("/run/systemd/notify", "", "", 7).unwrap();
    assert_eq!(e.socket, Some(Target::Path("/run/systemd/notify".into())));
    let e = env("@/org/freedesktop/systemd1/notify/123", "", "", 7).unwrap();
    assert_eq!(
        e.socket,
        Some(Target::Abstract(
            b"/org/freedesktop/systemd1/notify/123".to_vec()
        ))
    );
    for bad in ["relative/path", "@", "vsock:2:1234"] {
        assert!(
            matches!(env(bad, "", "", 7), Err(NotifyError::BadSocket(_))),
            "{bad} accepted"
        );
    }
}

#[test]
fn watchdog_is_half_the_timeout_and_only_for_its_pid() {
    let e = env("/n", "3000000", "", 7).unwrap();
    assert_eq!(e.watchdog, Some(Duration::from_secs(3)));
    assert_eq!(e.watchdog_interval(), Some(Duration::from_millis(1500)));
    let e = env("/n", "3000000", "7", 7).unwrap();
    assert_eq!(e.watchdog_interval(), Some(Duration::from_millis(1500)));
    let e = env("/n", "3000000", "8", 7).unwrap();
    assert_eq!(e.watchdog, None, "WATCHDOG_PID of another process");
    assert!(matches!(
        env("/n", "0", "", 7),
        Err(NotifyError::BadWatchdogUsec(_))
    ));
    assert!(matches!(
        env("/n", "soon", "", 7),
        Err(NotifyError::BadWatchdogUsec(_))
    ));
    assert!(matches!(
        env("/n", "1000", "me", 7),
        Err(NotifyError::BadWatchdogPid(_))
    ));
}

#[test]
fn message_texts() {
    assert_eq!(
        Message::Ready {
            status: "ipmp0: ok"
        }
        .text(),
        "READY=1\nSTATUS=ipmp0: ok"
    );
    assert_eq!(Message::Status("a\nb").text(), "STATUS=a b");
    assert_eq!(Message::Watchdog.text(), "WATCHDOG=1");
    assert!(Message::Reloading.text().starts_with("RELOADING=1\n"));
    assert!(Message::Stopping.text().starts_with("STOPPING=1\n"));
}

fn group(name: &str, members: &[&str]) -> (Group, Instant) {
    let t0 = Instant::now();
    let spec = GroupSpec {
        name: name.into(),
        failback: true,
        members: members
            .iter()
            .map(|n| MemberSpec {
                name: (*n).into(),
                standby: false,
            })
            .collect(),
        n_addresses: 1,
        n_buckets: 64,
        flap_max_ups: 2,
        flap_window: Duration::from_secs(60),
    };
    (Group::new(spec, &vec![Carrier::Up; members.len()], t0), t0)
}

#[test]
fn status_line_names_what_is_not_ok() {
    let (mut g, t0) = group("ipmp0", &["m0", "m1", "m2"]);
    assert_eq!(status_line([&g]), "ipmp0: ok, 3/3 members usable");
    g.handle(
        Event::Link {
            member: 0,
            up: false,
        },
        t0,
    )
    .unwrap();
    assert_eq!(
        status_line([&g]),
        "ipmp0: degraded, 2/3 members usable; m0 failed (link down)"
    );
    g.handle(Event::Offline { member: 2 }, t0).unwrap();
    assert_eq!(
        status_line([&g]),
        "ipmp0: degraded, 1/3 members usable; m0 failed (link down), m2 offline"
    );
    let (h, _) = group("ipmp1", &["m3"]);
    assert_eq!(
        status_line([&g, &h]),
        "ipmp0: degraded, 1/3 members usable; m0 failed (link down), m2 offline | ipmp1: ok, \
         1/1 members usable"
    );
    assert_eq!(status_line([]), "no groups");
}

#[test]
fn notifier_sends_to_a_socket_and_repeats_no_status() {
    let dir = std::env::temp_dir().join(format!("ipmp-notify-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&path);
    let listener = UnixDatagram::bind(&path).unwrap();
    listener.set_nonblocking(true).unwrap();
    let mut n = Notifier::new(NotifyEnv {
        socket: Some(Target::Path(path.clone())),
        watchdog: Some(Duration::from_secs(2)),
    })
    .unwrap();
    assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(1)));
    n.ready("x: ok");
    n.status("x: ok");
    n.status("x: degraded");
    n.watchdog();
    n.stopping();
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while let Ok(len) = listener.recv(&mut buf) {
        got.push(String::from_utf8_lossy(&buf[..len]).into_owned());
    }
    assert_eq!(
        got,
        [
            "READY=1\nSTATUS=x: ok",
            "STATUS=x: degraded",
            "WATCHDOG=1",
            "STOPPING=1\nSTATUS=stopping"
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn notifier_reaches_an_abstract_socket() {
    let name = format!("ipmp-notify-test-{}", std::process::id());
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let listener = UnixDatagram::bind_addr(&addr).unwrap();
    let target = parse_target(OsStr::new(&format!("@{name}"))).unwrap();
    let mut n = Notifier::new(NotifyEnv {
        socket: Some(target),
        watchdog: None,
    })
    .unwrap();
    n.watchdog();
    let mut buf = [0u8; 64];
    let len = listener.recv(&mut buf).unwrap();
    assert_eq!(&buf[..len], b"WATCHDOG=1");
}

#[test]
fn without_a_socket_nothing_happens() {
    let mut n = Notifier::new(NotifyEnv::default()).unwrap();
    assert_eq!(n.watchdog_interval(), None);
    n.ready("ok");
    n.watchdog();
    n.stopping();
}

#[test]
fn journal_stream_must_name_stderr() {
    assert!(journal_stream_is("8:12345", 8, 12345));
    assert!(!journal_stream_is("8:12345", 8, 12346));
    assert!(!journal_stream_is("8:12345", 9, 12345));
    assert!(!journal_stream_is("", 8, 12345));
    assert!(!journal_stream_is("8-12345", 8, 12345));
}
