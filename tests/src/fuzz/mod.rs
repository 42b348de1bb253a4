//! Packet generators for the data-plane fuzz test (tests/tests/fuzz.rs): proptest strategies
//! for structured frames — Ethernet with optional 802.1Q/QinQ tags; ARP; IPv4 with options,
//! fragments, bad IHL and bad total length; IPv6 with extension header chains (hop-by-hop,
//! routing, destination options, AH, fragment) and bad payload lengths; TCP, UDP, SCTP,
//! ICMP/ICMPv6 echoes (with probe payloads) and neighbour discovery — with addresses and MACs
//! drawn from the lab's own ([`Palette`]) or random, then mutated: truncated, bytes flipped,
//! or a fully random frame instead.

use proptest::{
    prelude::*,
    sample::Index,
    strategy::{BoxedStrategy, ValueTree as _},
    test_runner::{Config, RngAlgorithm, TestRng, TestRunner},
};

use crate::packets::{
    Mac, NEXTHDR_AUTH, NEXTHDR_DEST, NEXTHDR_FRAGMENT, NEXTHDR_HOP, NEXTHDR_ROUTING, checksum,
    sum16,
};

/// The addresses and MACs the lab's maps know, so that generated frames hit them often.
#[derive(Debug, Clone, Default)]
pub struct Palette {
    pub macs: Vec<Mac>,
    pub v4: Vec<[u8; 4]>,
    pub v6: Vec<[u8; 16]>,
    /// The daemon's probe identity: echo id, cookie.
    pub probe_id: u16,
    pub cookie: u64,
}

/// A destination MAC: the device's own (which the frame is run on) or another.
#[derive(Debug, Clone, Copy)]
pub enum Dst {
    Device,
    Mac(Mac),
}

impl Dst {
    fn mac(self, device: Mac) -> Mac {
        match self {
            Dst::Device => device,
            Dst::Mac(mac) => mac,
        }
    }
}

/// A frame as generated, before mutation.
#[derive(Debug, Clone)]
pub struct Frame {
    pub dst: Dst,
    pub src: Mac,
    /// VLAN tags (TPID 0x8100 or 0x88a8) between the MACs and the ethertype.
    pub tags: Vec<(u16, u16)>,
    pub l3: L3,
}

#[derive(Debug, Clone)]
pub enum L3 {
    /// hardware type, protocol type, hlen, plen, op, sha, spa, tha, tpa, padding.
    Arp {
        head: (u16, u16, u8, u8),
        op: u16,
        sha: Mac,
        spa: [u8; 4],
        tha: Dst,
        tpa: [u8; 4],
        pad: usize,
    },
    V4 {
        /// Version and IHL byte (0x45 plain; options follow for IHL > 5).
        vihl: u8,
        tos: u8,
        len: Len,
        /// Flags and fragment offset.
        frag: u16,
        ttl: u8,
        src: [u8; 4],
        dst: [u8; 4],
        l4: L4,
    },
    V6 {
        /// Version nibble (6 mostly).
        version: u8,
        hops: u8,
        src: [u8; 16],
        dst: [u8; 16],
        /// Extension headers: next-header kind and length byte.
        ext: Vec<(u8, u8)>,
        len: Len,
        l4: L4,
    },
    Other {
        ethertype: u16,
        payload: Vec<u8>,
    },
}

/// A length field: right, or wrong by some amount, or any value.
#[derive(Debug, Clone, Copy)]
pub enum Len {
    Right,
    Off(i16),
    Any(u16),
}

impl Len {
    fn value(self, right: usize) -> u16 {
        match self {
            Len::Right => right as u16,
            Len::Off(d) => (right as i32 + i32::from(d)).clamp(0, 0xffff) as u16,
            Len::Any(v) => v,
        }
    }
}

#[derive(Debug, Clone)]
pub enum L4 {
    /// Protocol number and ports (TCP, UDP, SCTP).
    Ports(u8, u16, u16),
    /// ICMP/ICMPv6 echo: type, id, sequence, payload.
    Echo(u8, u16, u16, Vec<u8>),
    /// Neighbour discovery: type, code, flags byte, target, whether a link-layer option
    /// follows.
    Nd(u8, u8, u8, [u8; 16], Option<Mac>),
    /// Any protocol with any bytes (for ICMP/ICMPv6, any type and code).
    Raw(u8, Vec<u8>),
}

/// What is done to the built frame.
#[derive(Debug, Clone)]
pub enum Mutation {
    None,
    Truncate(Index),
    Flip(Vec<(Index, u8)>),
    /// A fully random frame instead.
    Random(Vec<u8>),
}

fn mac(p: &Palette) -> BoxedStrategy<Mac> {
    let known = p.macs.clone();
    prop_oneof![
        6 => prop::sample::select(known),
        1 => Just([0xff; 6]),
        1 => any::<[u8; 3]>().prop_map(|t| [0x33, 0x33, 0xff, t[0], t[1], t[2]]),
        1 => any::<[u8; 3]>().prop_map(|t| [0x01, 0x00, 0x5e, t[0] & 0x7f, t[1], t[2]]),
        2 => any::<Mac>(),
    ]
    .boxed()
}

/// An address: one the lab knows, `broadcast`, a multicast one, or random.
fn addr<const N: usize>(
    known: &[[u8; N]],
    broadcast: [u8; N],
    multicast: fn(u8) -> [u8; N],
) -> BoxedStrategy<[u8; N]>
where
    [u8; N]: Arbitrary,
{
    prop_oneof![
        5 => prop::sample::select(known.to_vec()),
        1 => Just(broadcast),
        1 => any::<u8>().prop_map(multicast),
        3 => any::<[u8; N]>(),
    ]
    .boxed()
}

fn addr4(p: &Palette) -> BoxedStrategy<[u8; 4]> {
    addr(&p.v4, [255; 4], |b| [224, 0, 0, b])
}

/// (IPv6 has no broadcast: the unspecified address instead.)
fn addr6(p: &Palette) -> BoxedStrategy<[u8; 16]> {
    addr(&p.v6, [0; 16], |b| {
        let mut a = [0u8; 16];
        a[..2].copy_from_slice(&[0xff, 0x02]);
        a[15] = b;
        a
    })
}

fn bytes(max: usize) -> BoxedStrategy<Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max).boxed()
}

fn len() -> BoxedStrategy<Len> {
    prop_oneof![
        8 => Just(Len::Right),
        2 => (-16i16..16).prop_map(Len::Off),
        1 => any::<u16>().prop_map(Len::Any),
    ]
    .boxed()
}

/// An echo payload: a probe payload (the daemon's or one slightly off) or random bytes.
fn echo_payload(p: &Palette, seq: u16) -> BoxedStrategy<Vec<u8>> {
    let cookie = p.cookie;
    let probe = (
        prop_oneof![4 => Just(cookie), 1 => any::<u64>()],
        prop_oneof![4 => Just(u32::from(seq)), 1 => any::<u32>()],
        prop_oneof![6 => Just(ipmp_common::probe::PROBE_MAGIC), 1 => any::<u32>()],
        any::<u64>(),
        0usize..24,
    )
        .prop_map(|(cookie, seq, magic, send_ns, pad)| {
            let mut b = Vec::with_capacity(32 + pad);
            b.extend_from_slice(&magic.to_be_bytes());
            b.extend_from_slice(&ipmp_common::probe::PROBE_MSG_ECHO.to_be_bytes());
            b.extend_from_slice(&cookie.to_be_bytes());
            b.extend_from_slice(&seq.to_be_bytes());
            b.extend_from_slice(&[0; 4]);
            b.extend_from_slice(&send_ns.to_be_bytes());
            b.resize(32 + pad, 0);
            b
        });
    prop_oneof![3 => probe, 1 => bytes(64)].boxed()
}

fn echo(p: &Palette, v6: bool) -> BoxedStrategy<L4> {
    let (request, reply) = if v6 { (128u8, 129u8) } else { (8, 0) };
    let id = p.probe_id;
    let p = p.clone();
    (
        prop_oneof![Just(request), Just(reply)],
        prop_oneof![2 => Just(id), 1 => any::<u8>().prop_map(move |lo| id & 0xff00 | u16::from(lo)), 1 => any::<u16>()],
        any::<u16>(),
    )
        .prop_flat_map(move |(ty, id, seq)| {
            echo_payload(&p, seq).prop_map(move |payload| L4::Echo(ty, id, seq, payload))
        })
        .boxed()
}

fn l4(p: &Palette, v6: bool) -> BoxedStrategy<L4> {
    let ports = (
        prop_oneof![Just(6u8), Just(17u8), Just(132u8)],
        any::<u16>(),
        any::<u16>(),
    )
        .prop_map(|(proto, s, d)| L4::Ports(proto, s, d));
    let icmp = if v6 { 58u8 } else { 1 };
    let raw = prop_oneof![
        2 => (Just(icmp), bytes(48)).prop_map(|(p, b)| L4::Raw(p, b)),
        1 => (any::<u8>(), bytes(48)).prop_map(|(p, b)| L4::Raw(p, b)),
    ];
    if !v6 {
        return prop_oneof![3 => ports, 4 => echo(p, false), 1 => raw].boxed();
    }
    let nd = (
        prop_oneof![4 => Just(135u8), 3 => Just(136u8), 1 => 133u8..=137],
        prop_oneof![6 => Just(0u8), 1 => any::<u8>()],
        any::<u8>(),
        addr6(p),
        prop::option::of(mac(p)),
    )
        .prop_map(|(ty, code, flags, target, opt)| L4::Nd(ty, code, flags, target, opt));
    prop_oneof![3 => ports, 4 => echo(p, true), 4 => nd, 1 => raw].boxed()
}

fn arp(p: &Palette) -> BoxedStrategy<L3> {
    let head = prop_oneof![
        8 => Just((1u16, 0x0800u16, 6u8, 4u8)),
        1 => any::<(u16, u16, u8, u8)>(),
    ];
    (
        head,
        prop_oneof![4 => Just(1u16), 3 => Just(2u16), 1 => any::<u16>()],
        mac(p),
        addr4(p),
        prop_oneof![1 => Just(Dst::Device), 3 => mac(p).prop_map(Dst::Mac)],
        addr4(p),
        prop_oneof![Just(0usize), Just(18usize), 0usize..40],
    )
        .prop_map(|(head, op, sha, spa, tha, tpa, pad)| L3::Arp {
            head,
            op,
            sha,
            spa,
            tha,
            tpa,
            pad,
        })
        .boxed()
}

fn ipv4(p: &Palette) -> BoxedStrategy<L3> {
    let vihl = prop_oneof![
        12 => Just(0x45u8),
        2 => 0x46u8..=0x4f,
        1 => 0x40u8..=0x44,
        1 => any::<u8>(),
    ];
    let frag = prop_oneof![
        6 => Just(0u16),
        3 => Just(0x4000u16),
        1 => Just(0x2000u16),
        1 => 1u16..0x2000,
        1 => any::<u16>(),
    ];
    (
        vihl,
        any::<u8>(),
        len(),
        frag,
        prop_oneof![Just(64u8), any::<u8>()],
        addr4(p),
        addr4(p),
        l4(p, false),
    )
        .prop_map(|(vihl, tos, len, frag, ttl, src, dst, l4)| L3::V4 {
            vihl,
            tos,
            len,
            frag,
            ttl,
            src,
            dst,
            l4,
        })
        .boxed()
}

fn ipv6(p: &Palette) -> BoxedStrategy<L3> {
    let ext = prop::collection::vec(
        (
            prop::sample::select(vec![
                NEXTHDR_HOP,
                NEXTHDR_ROUTING,
                NEXTHDR_FRAGMENT,
                NEXTHDR_AUTH,
                NEXTHDR_DEST,
            ]),
            prop_oneof![3 => Just(0u8), 2 => 1u8..4, 1 => any::<u8>()],
        ),
        0..8,
    );
    let ext = prop_oneof![3 => Just(Vec::new()), 2 => ext];
    (
        prop_oneof![12 => Just(6u8), 1 => any::<u8>().prop_map(|v| v >> 4)],
        prop_oneof![2 => Just(255u8), 1 => Just(64u8), 1 => any::<u8>()],
        addr6(p),
        addr6(p),
        ext,
        len(),
        l4(p, true),
    )
        .prop_map(|(version, hops, src, dst, ext, len, l4)| L3::V6 {
            version,
            hops,
            src,
            dst,
            ext,
            len,
            l4,
        })
        .boxed()
}

/// Structured frames.
pub fn frames(p: &Palette) -> BoxedStrategy<Frame> {
    let tag = (prop_oneof![Just(0x8100u16), Just(0x88a8u16)], any::<u16>());
    let tags = prop_oneof![8 => Just(Vec::new()), 1 => prop::collection::vec(tag, 1..3)];
    let other = (
        prop_oneof![Just(0x88ccu16), Just(0x8100u16), any::<u16>()],
        bytes(80),
    )
        .prop_map(|(ethertype, payload)| L3::Other { ethertype, payload });
    let l3 = prop_oneof![3 => arp(p), 5 => ipv4(p), 6 => ipv6(p), 1 => other];
    let dst = prop_oneof![2 => Just(Dst::Device), 3 => mac(p).prop_map(Dst::Mac)];
    (dst, mac(p), tags, l3)
        .prop_map(|(dst, src, tags, l3)| Frame { dst, src, tags, l3 })
        .boxed()
}

/// Mutations: mostly none, else a truncation, flipped bytes or a random frame.
pub fn mutations() -> BoxedStrategy<Mutation> {
    prop_oneof![
        10 => Just(Mutation::None),
        3 => any::<Index>().prop_map(Mutation::Truncate),
        3 => prop::collection::vec((any::<Index>(), 1u8..=255), 1..5).prop_map(Mutation::Flip),
        1 => prop::collection::vec(any::<u8>(), 14..160).prop_map(Mutation::Random),
    ]
    .boxed()
}

impl Frame {
    /// The frame's bytes, sent to a device whose MAC is `device`.
    pub fn build(&self, device: Mac) -> Vec<u8> {
        let mut f = Vec::with_capacity(128);
        f.extend_from_slice(&self.dst.mac(device));
        f.extend_from_slice(&self.src);
        for (tpid, tci) in &self.tags {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&tci.to_be_bytes());
        }
        match &self.l3 {
            L3::Arp {
                head,
                op,
                sha,
                spa,
                tha,
                tpa,
                pad,
            } => {
                f.extend_from_slice(&0x0806u16.to_be_bytes());
                f.extend_from_slice(&head.0.to_be_bytes());
                f.extend_from_slice(&head.1.to_be_bytes());
                f.extend_from_slice(&[head.2, head.3]);
                f.extend_from_slice(&op.to_be_bytes());
                f.extend_from_slice(sha);
                f.extend_from_slice(spa);
                f.extend_from_slice(&tha.mac(device));
                f.extend_from_slice(tpa);
                f.resize(f.len() + pad, 0);
            }
            L3::V4 {
                vihl,
                tos,
                len,
                frag,
                ttl,
                src,
                dst,
                l4,
            } => {
                f.extend_from_slice(&0x0800u16.to_be_bytes());
                let (proto, body) = l4_bytes(l4, &Pseudo::V4(*src, *dst));
                let hlen = (usize::from(vihl & 0xf) * 4).max(20);
                let mut ip = vec![*vihl, *tos, 0, 0, 0x12, 0x34];
                ip.extend_from_slice(&frag.to_be_bytes());
                ip.extend_from_slice(&[*ttl, proto, 0, 0]);
                ip.extend_from_slice(src);
                ip.extend_from_slice(dst);
                // Options: NOPs and an end of list.
                if hlen > 20 {
                    ip.resize(hlen - 1, 1);
                    ip.push(0);
                }
                let total = len.value(hlen + body.len());
                ip[2..4].copy_from_slice(&total.to_be_bytes());
                let c = checksum(&ip);
                ip[10..12].copy_from_slice(&c.to_be_bytes());
                f.extend_from_slice(&ip);
                f.extend_from_slice(&body);
            }
            L3::V6 {
                version,
                hops,
                src,
                dst,
                ext,
                len,
                l4,
            } => {
                f.extend_from_slice(&0x86ddu16.to_be_bytes());
                let (proto, body) = l4_bytes(l4, &Pseudo::V6(*src, *dst));
                let mut chain = Vec::new();
                let mut kinds: Vec<u8> = ext.iter().map(|e| e.0).collect();
                kinds.push(proto);
                for (i, (kind, len8)) in ext.iter().enumerate() {
                    let next = kinds[i + 1];
                    let size = match *kind {
                        NEXTHDR_FRAGMENT => 8,
                        NEXTHDR_AUTH => (usize::from(*len8) + 2) * 4,
                        _ => (usize::from(*len8) + 1) * 8,
                    };
                    let mut h = vec![0u8; size.min(64)];
                    h[0] = next;
                    h[1] = if *kind == NEXTHDR_FRAGMENT { 0 } else { *len8 };
                    if *kind == NEXTHDR_FRAGMENT {
                        // Offset and M flag from the length byte, so both kinds occur.
                        h[2] = *len8;
                        h[3] = len8 & 1;
                    }
                    chain.extend_from_slice(&h);
                }
                let first = kinds[0];
                let plen = len.value(chain.len() + body.len());
                f.extend_from_slice(&[version << 4, 0, 0, 0]);
                f.extend_from_slice(&plen.to_be_bytes());
                f.extend_from_slice(&[first, *hops]);
                f.extend_from_slice(src);
                f.extend_from_slice(dst);
                f.extend_from_slice(&chain);
                f.extend_from_slice(&body);
            }
            L3::Other { ethertype, payload } => {
                f.extend_from_slice(&ethertype.to_be_bytes());
                f.extend_from_slice(payload);
            }
        }
        f
    }
}

enum Pseudo {
    V4([u8; 4], [u8; 4]),
    V6([u8; 16], [u8; 16]),
}

/// Protocol number and bytes of an L4 header and payload, checksummed where it is cheap.
fn l4_bytes(l4: &L4, pseudo: &Pseudo) -> (u8, Vec<u8>) {
    let icmp = match pseudo {
        Pseudo::V4(..) => 1,
        Pseudo::V6(..) => 58,
    };
    let (proto, mut b, check_at) = match l4 {
        L4::Ports(proto, s, d) => {
            let mut b = Vec::new();
            b.extend_from_slice(&s.to_be_bytes());
            b.extend_from_slice(&d.to_be_bytes());
            let (size, at) = match proto {
                6 => (20, Some(16)),
                17 => (8, Some(6)),
                _ => (12, None),
            };
            b.resize(size, 0);
            if *proto == 6 {
                b[12] = 0x50;
            }
            if *proto == 17 {
                b[4..6].copy_from_slice(&(size as u16).to_be_bytes());
            }
            (*proto, b, at)
        }
        L4::Echo(ty, id, seq, payload) => {
            let mut b = vec![*ty, 0, 0, 0];
            b.extend_from_slice(&id.to_be_bytes());
            b.extend_from_slice(&seq.to_be_bytes());
            b.extend_from_slice(payload);
            (icmp, b, Some(2))
        }
        L4::Nd(ty, code, flags, target, opt) => {
            let mut b = vec![*ty, *code, 0, 0, *flags, 0, 0, 0];
            b.extend_from_slice(target);
            if let Some(mac) = opt {
                b.extend_from_slice(&[if *ty == 136 { 2 } else { 1 }, 1]);
                b.extend_from_slice(mac);
            }
            (58, b, Some(2))
        }
        L4::Raw(proto, bytes) => (*proto, bytes.clone(), None),
    };
    if let Some(at) = check_at {
        let sum = match pseudo {
            Pseudo::V4(s, d) if proto != 1 => {
                sum16(d, sum16(s, 0)) + u32::from(proto) + b.len() as u32
            }
            Pseudo::V4(..) => 0,
            Pseudo::V6(s, d) => sum16(d, sum16(s, 0)) + u32::from(proto) + b.len() as u32,
        };
        let c = crate::packets::fold(sum16(&b, sum));
        b[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }
    (proto, b)
}

impl Mutation {
    pub fn apply(&self, mut frame: Vec<u8>) -> Vec<u8> {
        match self {
            Mutation::None => frame,
            Mutation::Truncate(at) => {
                frame.truncate(at.index(frame.len() + 1));
                frame
            }
            Mutation::Flip(flips) => {
                for (at, x) in flips {
                    if !frame.is_empty() {
                        let i = at.index(frame.len());
                        frame[i] ^= x;
                    }
                }
                frame
            }
            Mutation::Random(bytes) => bytes.clone(),
        }
    }
}

/// A reproducible stream of generated frames: the same seed gives the same frames.
pub struct Generator {
    runner: TestRunner,
    frames: BoxedStrategy<Frame>,
    mutations: BoxedStrategy<Mutation>,
}

impl Generator {
    pub fn new(palette: &Palette, seed: u64) -> Self {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &key);
        Self {
            runner: TestRunner::new_with_rng(Config::default(), rng),
            frames: frames(palette),
            mutations: mutations(),
        }
    }

    /// The next structured frame for a device whose MAC is `device`, unmutated.
    pub fn frame(&mut self, device: Mac) -> Vec<u8> {
        match self.frames.new_tree(&mut self.runner) {
            Ok(tree) => tree.current().build(device),
            // The strategies above never reject a value.
            Err(_) => Vec::new(),
        }
    }

    /// The next frame for a device whose MAC is `device`, mutated.
    pub fn next_frame(&mut self, device: Mac) -> Vec<u8> {
        let frame = self.frame(device);
        match self.mutations.new_tree(&mut self.runner) {
            Ok(m) => m.current().apply(frame),
            Err(_) => frame,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn palette() -> Palette {
        Palette {
            macs: vec![[2, 0, 0, 0, 0, 0x10]],
            v4: vec![[198, 51, 100, 10]],
            v6: vec![[
                0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
            ]],
            probe_id: 0x1d1d,
            cookie: 7,
        }
    }

    #[test]
    fn a_seed_gives_the_same_frames() {
        let device = [2, 0, 0, 0, 0, 0x10];
        let mut a = Generator::new(&palette(), 1);
        let mut b = Generator::new(&palette(), 1);
        let mut c = Generator::new(&palette(), 2);
        let (fa, fb, fc): (Vec<_>, Vec<_>, Vec<_>) = (0..50)
            .map(|_| {
                (
                    a.next_frame(device),
                    b.next_frame(device),
                    c.next_frame(device),
                )
            })
            .fold((vec![], vec![], vec![]), |mut acc, (x, y, z)| {
                acc.0.push(x);
                acc.1.push(y);
                acc.2.push(z);
                acc
            });
        assert_eq!(fa, fb);
        assert_ne!(fa, fc);
    }

    #[test]
    fn structured_frames_cover_every_kind() {
        let mut g = Generator::new(&palette(), 3);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..2000 {
            let f = g.frame([2, 0, 0, 0, 0, 0x10]);
            // Ethertype behind any VLAN tags.
            let mut at = 12;
            while matches!(u16::from_be_bytes([f[at], f[at + 1]]), 0x8100 | 0x88a8)
                && f.len() >= at + 6
            {
                at += 4;
            }
            seen.insert(u16::from_be_bytes([f[at], f[at + 1]]));
            // An untagged IPv4 header is as long as its IHL says (at least 20 bytes), and its
            // checksum covers exactly that.
            if at == 12 && f[12..14] == [8, 0] {
                let hlen = (usize::from(f[14] & 0xf) * 4).max(20);
                assert_eq!(checksum(&f[14..14 + hlen]), 0, "IPv4 header {f:02x?}");
            }
        }
        for ethertype in [0x0806, 0x0800, 0x86dd] {
            assert!(seen.contains(&ethertype), "no {ethertype:#06x} frames");
        }
    }
}
