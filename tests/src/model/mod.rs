//! A userspace model of what each eBPF program must do with a packet, written from the
//! specification (README, docs/architecture.md, the programs' doc comments) with the parsing
//! rules mirrored, never by calling into the BPF code. The fuzz test (tests/tests/fuzz.rs)
//! runs every program on generated packets and compares its verdict, output bytes, counter and
//! probe record with [`Outcome`]s predicted here from the same map contents ([`World`]).
//!
//! One file per program; `member` and `probe` hold the decisions the two member ingress
//! programs share (as `member.rs` and `probe.rs` do in ipmp-ebpf).

pub mod decision;
pub mod flow;
pub mod member;
pub mod probe;
pub mod tc_egress;
pub mod tc_ingress;
pub mod tc_member;
pub mod xdp_member;

use std::collections::HashMap;

use ipmp_common::{
    AddrInfo, AddrKey, FlowKey, GroupInfo, MemberInfo, ProbeConfig, ProbeEvent, Reason, TargetInfo,
    TargetKey, TestAddrInfo,
};

pub const TC_ACT_OK: u32 = 0;
pub const TC_ACT_SHOT: u32 = 2;
pub const TC_ACT_REDIRECT: u32 = 7;
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;

/// The contents of every map the programs read, as the test loaded them.
#[derive(Debug, Clone, Default)]
pub struct World {
    pub groups: HashMap<u32, GroupInfo>,
    pub members: HashMap<u32, MemberInfo>,
    /// `IPMP_BUCKETS` entries that are not 0.
    pub buckets: HashMap<u32, u32>,
    pub addrs: HashMap<AddrKey, AddrInfo>,
    pub testaddrs: HashMap<AddrKey, TestAddrInfo>,
    pub targets: HashMap<TargetKey, TargetInfo>,
    /// `IPMP_CONFIG[0]` (all zero when the daemon does not probe).
    pub config: ProbeConfig,
    /// What the routes say about a next hop (the model of `bpf_fib_lookup`).
    pub routes: Routes,
}

/// What is known of `bpf_fib_lookup`'s answer in the test's network namespace: the model
/// does not reproduce the kernel's FIB, so the test names the destinations with a next hop
/// and without one, and those (few) whose outcome it does not predict, for which either is
/// accepted.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    /// Per IPMP interface ifindex: prefixes (address, length) routed through it.
    pub v4: HashMap<u32, Prefixes<4>>,
    pub v6: HashMap<u32, Prefixes<16>>,
}

/// Prefixes whose outcome is not predicted, then prefixes without a next hop (the host's
/// own addresses), then prefixes with one; the first list that holds a destination decides.
#[derive(Debug, Clone, Default)]
pub struct Prefixes<const N: usize> {
    pub unknown: Vec<([u8; N], u8)>,
    pub none: Vec<([u8; N], u8)>,
    pub found: Vec<([u8; N], u8)>,
}

impl<const N: usize> Prefixes<N> {
    fn lookup(&self, dst: &[u8; N]) -> Fib {
        let within = |list: &[([u8; N], u8)]| list.iter().any(|(p, len)| in_prefix(dst, p, *len));
        if within(&self.unknown) {
            Fib::Unknown
        } else if within(&self.none) {
            Fib::NoRoute
        } else if within(&self.found) {
            Fib::Found
        } else {
            Fib::Unknown
        }
    }
}

/// `bpf_fib_lookup`'s answer as the model knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fib {
    Found,
    NoRoute,
    /// Either of the two.
    Unknown,
}

impl Routes {
    /// The lookup of `key`'s destination on `oif` (`BPF_FIB_LOOKUP_OUTPUT`, forwarding on).
    pub fn lookup(&self, oif: u32, key: &FlowKey) -> Fib {
        if key.ip_version == 4 {
            return self
                .v4
                .get(&oif)
                .map_or(Fib::Unknown, |p| p.lookup(&key.dst[0].to_ne_bytes()));
        }
        let dst = words_to_bytes(key.dst);
        let src = words_to_bytes(key.src);
        // The kernel never forwards to or from link-local, multicast or loopback addresses
        // (`rt6_need_strict` on both; a link-local destination never gets here).
        if needs_strict(&dst) || needs_strict(&src) {
            return Fib::NoRoute;
        }
        self.v6.get(&oif).map_or(Fib::Unknown, |p| p.lookup(&dst))
    }
}

fn needs_strict(a: &[u8; 16]) -> bool {
    let loopback = *a == std::net::Ipv6Addr::LOCALHOST.octets();
    a[0] == 0xff || (a[0] == 0xfe && a[1] & 0xc0 == 0x80) || loopback
}

pub fn in_prefix(addr: &[u8], prefix: &[u8], len: u8) -> bool {
    let len = usize::from(len);
    (0..len).all(|bit| {
        let (byte, shift) = (bit / 8, 7 - bit % 8);
        (addr[byte] >> shift) & 1 == (prefix[byte] >> shift) & 1
    })
}

pub fn words_to_bytes(w: [u32; 4]) -> [u8; 16] {
    let mut b = [0u8; 16];
    for (i, word) in w.iter().enumerate() {
        b[i * 4..i * 4 + 4].copy_from_slice(&word.to_ne_bytes());
    }
    b
}

/// One possible result of a program run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The program's return code.
    pub verdict: u32,
    /// The frame as the program leaves it.
    pub output: Vec<u8>,
    /// The counter it bumps (slot, reason) by one packet of the input's length; `None`: none.
    pub count: Option<(u32, Reason)>,
    /// The record it writes into `IPMP_PROBES` (`rx_ns` not compared).
    pub event: Option<ProbeEvent>,
}

/// What the model predicts: one outcome, or (where a kernel helper's answer is not known)
/// any of a few.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prediction {
    /// The kernel refuses to run a program on this input (shorter than an Ethernet header).
    Refused,
    OneOf(Vec<Outcome>),
}

impl Prediction {
    pub fn one(outcome: Outcome) -> Self {
        Prediction::OneOf(vec![outcome])
    }
}

/// Whether BPF_PROG_TEST_RUN refuses a frame for an skb program: shorter than an Ethernet
/// header, or an IPv4/IPv6 ethertype with less than the fixed IP header behind it (the
/// kernel pulls that header into the test skb). XDP takes the latter.
pub fn skb_test_run_refuses(frame: &[u8]) -> bool {
    use ipmp_common::packet::{ETH_HLEN, ETH_P_IP, ETH_P_IPV6, IPV4_HLEN, IPV6_HLEN};
    if frame.len() < ETH_HLEN {
        return true;
    }
    match be16(frame, 12) {
        ETH_P_IP => frame.len() < ETH_HLEN + IPV4_HLEN,
        ETH_P_IPV6 => frame.len() < ETH_HLEN + IPV6_HLEN,
        _ => false,
    }
}

/// Bytes of a frame as the programs read them: `None` past the end.
#[derive(Debug, Clone, Copy)]
pub struct Bytes<'a>(pub &'a [u8]);

impl Bytes<'_> {
    pub fn get<const N: usize>(&self, at: usize) -> Option<[u8; N]> {
        let s = self.0.get(at..at.checked_add(N)?)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Some(out)
    }

    pub fn be16(&self, at: usize) -> Option<u16> {
        self.get::<2>(at).map(u16::from_be_bytes)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

pub fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

pub fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub fn be64(b: &[u8], at: usize) -> u64 {
    (u64::from(be32(b, at)) << 32) | u64::from(be32(b, at + 4))
}

pub fn take16(b: &[u8], at: usize) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&b[at..at + 16]);
    out
}

/// Whether a MAC is broadcast or multicast (the I/G bit).
pub fn is_group_mac(first: u8) -> bool {
    first & 1 != 0
}
