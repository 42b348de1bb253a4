//! Raw ICMP/ICMPv6 sockets pinned to one member, for echo probes from its test address.
//!
//! `SO_BINDTODEVICE` makes the kernel send through the member even though no route points at
//! it (the test address has no prefix route): with an output interface and no matching route,
//! IPv4 and link-local IPv6 destinations are treated as on-link. Replies addressed to the
//! test address arrive on the member and are delivered here.

use std::{
    io,
    mem::size_of,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use tokio::io::{Interest, unix::AsyncFd};

/// One raw socket for one member and address family.
pub struct ProbeSocket {
    fd: AsyncFd<OwnedFd>,
    v6: bool,
    scope: u32,
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn setsockopt<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: value points to a live T of the given size.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    })
    .map(drop)
}

impl ProbeSocket {
    /// Opens a raw socket for `family_v6` on member `ifname` (ifindex `ifindex`), bound to
    /// `source` when given. Hop limit 1 keeps probes on the link, as in.mpathd does.
    pub fn open(ifname: &str, ifindex: u32, source: Option<IpAddr>, v6: bool) -> io::Result<Self> {
        let (domain, proto) = if v6 {
            (libc::AF_INET6, libc::IPPROTO_ICMPV6)
        } else {
            (libc::AF_INET, libc::IPPROTO_ICMP)
        };
        // SAFETY: plain socket(2); the fd is owned at once.
        let raw = check(unsafe {
            libc::socket(
                domain,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                proto,
            )
        })?;
        // SAFETY: a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let name = ifname.as_bytes();
        // SAFETY: name is a valid buffer of its length.
        check(unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_BINDTODEVICE,
                name.as_ptr().cast(),
                name.len() as libc::socklen_t,
            )
        })?;
        let one: libc::c_int = 1;
        if v6 {
            setsockopt(&fd, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, &one)?;
            setsockopt(&fd, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_HOPS, &one)?;
            // Only echo replies reach this socket (ICMP6_FILTER: a set bit blocks a type).
            let mut filter = [0xffff_ffffu32; 8];
            let reply = 129usize;
            filter[reply / 32] &= !(1 << (reply % 32));
            setsockopt(
                &fd,
                libc::IPPROTO_ICMPV6,
                1, /* ICMP6_FILTER */
                &filter,
            )?;
        } else {
            setsockopt(&fd, libc::IPPROTO_IP, libc::IP_TTL, &one)?;
            setsockopt(&fd, libc::IPPROTO_IP, libc::IP_MULTICAST_TTL, &one)?;
        }
        if let Some(src) = source {
            let addr = socket_addr(src, ifindex);
            let (storage, len) = sockaddr(&addr);
            // SAFETY: storage holds a valid sockaddr of len bytes.
            check(unsafe { libc::bind(fd.as_raw_fd(), (&raw const storage).cast(), len) })?;
        }
        // SAFETY: the AsyncFd owns the descriptor, which nothing else uses or closes.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE)? };
        Ok(Self {
            fd,
            v6,
            scope: ifindex,
        })
    }

    /// Sends one ICMP message (the kernel computes the ICMPv6 checksum; IPv4 callers fill it).
    pub fn send(&self, to: IpAddr, icmp: &[u8]) -> io::Result<()> {
        let addr = socket_addr(to, self.scope);
        let (storage, len) = sockaddr(&addr);
        // SAFETY: icmp and storage outlive the call; lengths match.
        let n = unsafe {
            libc::sendto(
                self.fd.get_ref().as_raw_fd(),
                icmp.as_ptr().cast(),
                icmp.len(),
                0,
                (&raw const storage).cast(),
                len,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            // in.mpathd counts EWOULDBLOCK as sent: a full queue is a lost probe, not an error.
            if e.kind() == io::ErrorKind::WouldBlock {
                return Ok(());
            }
            return Err(e);
        }
        Ok(())
    }

    /// Waits for the next message: its source and the ICMP/ICMPv6 message (for IPv4 without
    /// the IP header).
    pub async fn recv(&self) -> io::Result<(IpAddr, Vec<u8>)> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| recv_one(fd.get_ref(), self.v6)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }
}

fn recv_one(fd: &OwnedFd, v6: bool) -> io::Result<(IpAddr, Vec<u8>)> {
    let mut buf = [0u8; 2048];
    // SAFETY: sockaddr_storage is plain old data.
    let mut from: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: buf and from are valid for writes of their sizes.
    let n = unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            0,
            (&raw mut from).cast(),
            &raw mut len,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let data = &buf[..n as usize];
    if v6 {
        // SAFETY: the kernel filled an AF_INET6 address.
        let sin6: libc::sockaddr_in6 = unsafe { std::ptr::read((&raw const from).cast()) };
        Ok((
            IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)),
            data.to_vec(),
        ))
    } else {
        // Raw IPv4 sockets deliver the IP header too.
        let ihl = data.first().map_or(0, |b| usize::from(b & 0x0f) * 4);
        if data.len() < ihl + 8 || ihl < 20 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "short ICMP packet",
            ));
        }
        let src = Ipv4Addr::new(data[12], data[13], data[14], data[15]);
        Ok((IpAddr::V4(src), data[ihl..].to_vec()))
    }
}

fn socket_addr(ip: IpAddr, scope: u32) -> SocketAddr {
    match ip {
        IpAddr::V4(v4) => SocketAddr::V4(SocketAddrV4::new(v4, 0)),
        IpAddr::V6(v6) => {
            // Link-local addresses need the member as their scope.
            let scope = if v6.is_unicast_link_local() || v6.is_multicast() {
                scope
            } else {
                0
            };
            SocketAddr::V6(SocketAddrV6::new(v6, 0, 0, scope))
        }
    }
}

fn sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; zeroed is valid.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in fits in sockaddr_storage.
            unsafe { std::ptr::write((&raw mut storage).cast(), sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: 0,
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_in6 fits in sockaddr_storage.
            unsafe { std::ptr::write((&raw mut storage).cast(), sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_local_targets_get_the_member_scope() {
        let ll: IpAddr = "fe80::1".parse().unwrap();
        let global: IpAddr = "2001:db8::1".parse().unwrap();
        assert!(matches!(socket_addr(ll, 7), SocketAddr::V6(a) if a.scope_id() == 7));
        assert!(matches!(socket_addr(global, 7), SocketAddr::V6(a) if a.scope_id() == 0));
    }
}
