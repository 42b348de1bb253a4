//! Host names for addresses (ipmpstat without `-n`), by reverse lookup through getnameinfo
//! with NI_NAMEREQD. Lookups run in threads under one deadline: a slow or absent DNS server
//! costs at most [`DEADLINE`], and unanswered addresses stay numeric.

use std::{
    ffi::CStr,
    net::{IpAddr, SocketAddr},
    sync::mpsc,
    time::{Duration, Instant},
};

use ipmp::stat::Names;
use nix::sys::socket::{SockaddrLike as _, SockaddrStorage};

/// Longest wait for all names together.
const DEADLINE: Duration = Duration::from_millis(1500);

/// At most this many addresses are looked up (one thread each); the rest stay numeric.
const MAX_LOOKUPS: usize = 64;

pub fn lookup(addrs: &[String]) -> Names {
    let (tx, rx) = mpsc::channel();
    let mut pending = 0;
    for addr in addrs.iter().take(MAX_LOOKUPS) {
        let Ok(ip) = addr.parse::<IpAddr>() else {
            continue;
        };
        let tx = tx.clone();
        let addr = addr.clone();
        // Detached: a lookup still running at the deadline ends with the process.
        let spawned = std::thread::Builder::new()
            .name("ipmpstat-name".into())
            .spawn(move || {
                let _ = tx.send((addr, reverse(ip)));
            });
        if spawned.is_ok() {
            pending += 1;
        }
    }
    drop(tx);
    let deadline = Instant::now() + DEADLINE;
    let mut names = Names::new();
    while pending > 0 {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            break;
        };
        match rx.recv_timeout(left) {
            Ok((addr, name)) => {
                pending -= 1;
                if let Some(name) = name {
                    names.insert(addr, name);
                }
            }
            Err(_) => break,
        }
    }
    names
}

/// The name of `ip`, or `None` when it has none (NI_NAMEREQD) or the lookup fails.
fn reverse(ip: IpAddr) -> Option<String> {
    let sa = SockaddrStorage::from(SocketAddr::new(ip, 0));
    let mut host = [0 as libc::c_char; libc::NI_MAXHOST as usize];
    // SAFETY: `sa` is a valid sockaddr of `sa.len()` bytes; `host` is writable for its length
    // and getnameinfo NUL-terminates what it writes there on success; no service buffer.
    let rc = unsafe {
        libc::getnameinfo(
            sa.as_ptr(),
            sa.len(),
            host.as_mut_ptr(),
            host.len() as libc::socklen_t,
            std::ptr::null_mut(),
            0,
            libc::NI_NAMEREQD,
        )
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: on success `host` holds a NUL-terminated string.
    let name = unsafe { CStr::from_ptr(host.as_ptr()) };
    name.to_str().ok().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_a_name_and_garbage_is_skipped() {
        // /etc/hosts names 127.0.0.1 on every Linux system we run on.
        let names = lookup(&["127.0.0.1".to_owned(), "not-an-address".to_owned()]);
        assert!(
            names.get("127.0.0.1").is_some_and(|n| !n.is_empty()),
            "{names:?}"
        );
        assert!(!names.contains_key("not-an-address"));
    }
}
