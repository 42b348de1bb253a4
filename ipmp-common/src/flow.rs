//! The flow hash. The TC egress program and userspace (ipmpstat, tests, benchmarks) share this
//! function, so userspace can say which bucket, and so which member, carries a given flow.
//!
//! It is a seeded multiply-xorshift over the 5-tuple with a murmur3 `fmix64` finaliser: plain
//! FNV reduced `% n` clusters badly, and `skb->hash` is not used because TCP re-rolls it after an
//! RTO (net.core.txrehash), which would move flows between members.

/// The fields a flow is hashed on. Addresses and ports hold the packet's bytes read as
/// native-endian integers (what the eBPF program loads); use the constructors from userspace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Source address: IPv4 in `src[0]`, the rest zero; IPv6 in all four words.
    pub src: [u32; 4],
    pub dst: [u32; 4],
    /// Source and destination port (TCP/UDP/SCTP) or the ICMP echo id in `sport`; 0 for
    /// fragments and protocols without ports.
    pub sport: u16,
    pub dport: u16,
    /// IP protocol (the last IPv6 next header).
    pub proto: u8,
    /// 4 or 6.
    pub ip_version: u8,
}

impl FlowKey {
    /// IPv4 flow; ports in host byte order.
    pub const fn v4(src: [u8; 4], dst: [u8; 4], proto: u8, sport: u16, dport: u16) -> Self {
        Self {
            src: [u32::from_ne_bytes(src), 0, 0, 0],
            dst: [u32::from_ne_bytes(dst), 0, 0, 0],
            sport: u16::from_ne_bytes(sport.to_be_bytes()),
            dport: u16::from_ne_bytes(dport.to_be_bytes()),
            proto,
            ip_version: 4,
        }
    }

    /// IPv6 flow; ports in host byte order.
    pub const fn v6(src: [u8; 16], dst: [u8; 16], proto: u8, sport: u16, dport: u16) -> Self {
        Self {
            src: words(src),
            dst: words(dst),
            sport: u16::from_ne_bytes(sport.to_be_bytes()),
            dport: u16::from_ne_bytes(dport.to_be_bytes()),
            proto,
            ip_version: 6,
        }
    }
}

const fn words(b: [u8; 16]) -> [u32; 4] {
    [
        u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
        u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
        u32::from_ne_bytes([b[8], b[9], b[10], b[11]]),
        u32::from_ne_bytes([b[12], b[13], b[14], b[15]]),
    ]
}

#[inline(always)]
const fn mix(h: u64, w: u64) -> u64 {
    let h = (h ^ w).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h ^ (h >> 32)
}

#[inline(always)]
const fn pair(a: u32, b: u32) -> u64 {
    ((a as u64) << 32) | b as u64
}

/// Seeded 32-bit hash of a flow.
#[inline(always)]
pub const fn flow_hash(key: &FlowKey, seed: u32) -> u32 {
    let mut h = 0x243F_6A88_85A3_08D3 ^ seed as u64;
    h = mix(h, pair(key.src[0], key.src[1]));
    h = mix(h, pair(key.src[2], key.src[3]));
    h = mix(h, pair(key.dst[0], key.dst[1]));
    h = mix(h, pair(key.dst[2], key.dst[3]));
    h = mix(
        h,
        ((key.sport as u64) << 48)
            | ((key.dport as u64) << 32)
            | ((key.proto as u64) << 8)
            | key.ip_version as u64,
    );
    // murmur3 fmix64
    h ^= h >> 33;
    h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    h ^= h >> 33;
    h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    h ^= h >> 33;
    h as u32
}

/// Bucket of a hash in a table of `n_buckets` (multiply-shift: no division; each bucket gets
/// ⌊2³²/n⌋ or ⌈2³²/n⌉ hash values, a bias of at most n/2³² ≤ 1/65 536 for n ≤ MAX_BUCKETS).
/// `n_buckets` must be > 0.
#[inline(always)]
pub const fn bucket_of(hash: u32, n_buckets: u32) -> u32 {
    ((hash as u64 * n_buckets as u64) >> 32) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> FlowKey {
        let b = i.to_be_bytes();
        FlowKey::v4(
            [198, 51, 100, 10],
            [203, 0, 113, b[3]],
            6,
            40000 + (i % 20000) as u16,
            5201,
        )
    }

    #[test]
    fn deterministic_and_seeded() {
        let k = key(1);
        assert_eq!(flow_hash(&k, 7), flow_hash(&k, 7));
        assert_ne!(flow_hash(&k, 7), flow_hash(&k, 8));
    }

    #[test]
    fn every_field_matters() {
        let base = key(3);
        let h = flow_hash(&base, 1);
        let mut k = base;
        k.sport ^= 1;
        assert_ne!(flow_hash(&k, 1), h);
        let mut k = base;
        k.dport ^= 1;
        assert_ne!(flow_hash(&k, 1), h);
        let mut k = base;
        k.proto = 17;
        assert_ne!(flow_hash(&k, 1), h);
        let mut k = base;
        k.src[0] ^= 1 << 24;
        assert_ne!(flow_hash(&k, 1), h);
        let mut k = base;
        k.dst[3] = 1;
        assert_ne!(flow_hash(&k, 1), h);
    }

    #[test]
    fn spreads_evenly_over_buckets() {
        // 64 000 flows into 64 buckets: each bucket within ±10% of the mean.
        let n = 64u32;
        let mut counts = [0u32; 64];
        for i in 0..64_000u32 {
            let b = i.to_be_bytes();
            let k = FlowKey::v4([198, 51, 100, 10], [203, 0, b[2], b[3]], 6, 443, 5201);
            counts[bucket_of(flow_hash(&k, 0x1234_5678), n) as usize] += 1;
        }
        for c in counts {
            assert!(
                (900..=1100).contains(&c),
                "bucket count {c} is off the mean 1000"
            );
        }
    }

    #[test]
    fn bucket_of_stays_in_range() {
        for n in [1u32, 2, 3, 255, 256, 4096, 65_535, crate::MAX_BUCKETS] {
            for h in [0u32, 1, u32::MAX / 2, u32::MAX - 1, u32::MAX] {
                assert!(bucket_of(h, n) < n);
            }
        }
    }

    #[test]
    fn port_bytes_are_network_order() {
        let k = FlowKey::v4([1, 2, 3, 4], [5, 6, 7, 8], 6, 0x1234, 0xabcd);
        assert_eq!(k.sport.to_ne_bytes(), [0x12, 0x34]);
        assert_eq!(k.dport.to_ne_bytes(), [0xab, 0xcd]);
        assert_eq!(k.src[0].to_ne_bytes(), [1, 2, 3, 4]);
    }
}
