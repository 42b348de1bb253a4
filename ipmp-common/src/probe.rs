//! The payload of ipmpd's ICMP/ICMPv6 echo probes: the single definition shared by the prober
//! (which builds it) and the XDP program (which recognises the replies and timestamps them).
//!
//! On the wire the payload follows the 8-byte echo header (type, code, checksum, identifier,
//! sequence); every field is big-endian at the offsets below. A reply echoes it unchanged, so
//! the prober gets its cookie, sequence and send time back.

/// "IPMP" in ASCII: first word of every probe payload.
pub const PROBE_MAGIC: u32 = 0x4950_4d50;
/// `ProbePayload::kind` of an in.mpathd failure-detection probe (`PROBE_UNI`); the prober also
/// sends 0x5678 (multicast discovery) and 0x9abc (RTT only). XDP copies the kind, it does not
/// check it.
pub const PROBE_MSG_ECHO: u32 = 0x1234;

/// Byte offsets of the fields in the encoded payload.
pub const PROBE_OFF_MAGIC: usize = 0;
pub const PROBE_OFF_KIND: usize = 4;
pub const PROBE_OFF_COOKIE: usize = 8;
pub const PROBE_OFF_SEQ: usize = 16;
pub const PROBE_OFF_SEND_NS: usize = 24;
/// Length of the encoded payload (a probe may carry more bytes after it).
pub const PROBE_PAYLOAD_LEN: usize = 32;

/// A probe payload. `#[repr(C)]` with explicit padding so its layout matches the wire
/// offsets; encode with [`ProbePayload::to_bytes`], which writes network byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbePayload {
    /// `PROBE_MAGIC`.
    pub magic: u32,
    /// The message type (`PROBE_MSG_ECHO` and the prober's others).
    pub kind: u32,
    /// The per-daemon random cookie (`ProbeConfig::cookie` in `IPMP_CONFIG`).
    pub cookie: u64,
    /// Probe sequence number; its low 16 bits are also the ICMP sequence (mirror), which
    /// XDP checks.
    pub seq: u32,
    pub _pad: u32,
    /// When the probe was started, in the sender's own time base (ipmpd: ns since its prober
    /// started); echoed back, opaque to XDP.
    pub send_ns: u64,
}

impl ProbePayload {
    /// An echo probe payload.
    pub const fn echo(cookie: u64, seq: u32, send_ns: u64) -> Self {
        Self {
            magic: PROBE_MAGIC,
            kind: PROBE_MSG_ECHO,
            cookie,
            seq,
            _pad: 0,
            send_ns,
        }
    }

    /// The wire form (network byte order).
    pub fn to_bytes(&self) -> [u8; PROBE_PAYLOAD_LEN] {
        let mut b = [0u8; PROBE_PAYLOAD_LEN];
        b[PROBE_OFF_MAGIC..PROBE_OFF_MAGIC + 4].copy_from_slice(&self.magic.to_be_bytes());
        b[PROBE_OFF_KIND..PROBE_OFF_KIND + 4].copy_from_slice(&self.kind.to_be_bytes());
        b[PROBE_OFF_COOKIE..PROBE_OFF_COOKIE + 8].copy_from_slice(&self.cookie.to_be_bytes());
        b[PROBE_OFF_SEQ..PROBE_OFF_SEQ + 4].copy_from_slice(&self.seq.to_be_bytes());
        b[PROBE_OFF_SEND_NS..PROBE_OFF_SEND_NS + 8].copy_from_slice(&self.send_ns.to_be_bytes());
        b
    }

    /// Parses the start of an echo payload; `None` when it is shorter than
    /// `PROBE_PAYLOAD_LEN` or does not start with `PROBE_MAGIC`.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        let b: &[u8; PROBE_PAYLOAD_LEN] = b.get(..PROBE_PAYLOAD_LEN)?.try_into().ok()?;
        let u32_at = |at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let u64_at = |at: usize| {
            u64::from_be_bytes([
                b[at],
                b[at + 1],
                b[at + 2],
                b[at + 3],
                b[at + 4],
                b[at + 5],
                b[at + 6],
                b[at + 7],
            ])
        };
        if u32_at(PROBE_OFF_MAGIC) != PROBE_MAGIC {
            return None;
        }
        Some(Self {
            magic: PROBE_MAGIC,
            kind: u32_at(PROBE_OFF_KIND),
            cookie: u64_at(PROBE_OFF_COOKIE),
            seq: u32_at(PROBE_OFF_SEQ),
            _pad: u32_at(PROBE_OFF_SEQ + 4),
            send_ns: u64_at(PROBE_OFF_SEND_NS),
        })
    }
}

#[cfg(test)]
mod tests {
    use core::mem::{offset_of, size_of};

    use super::*;

    #[test]
    fn layout_matches_the_wire_offsets() {
        assert_eq!(size_of::<ProbePayload>(), PROBE_PAYLOAD_LEN);
        assert_eq!(offset_of!(ProbePayload, magic), PROBE_OFF_MAGIC);
        assert_eq!(offset_of!(ProbePayload, kind), PROBE_OFF_KIND);
        assert_eq!(offset_of!(ProbePayload, cookie), PROBE_OFF_COOKIE);
        assert_eq!(offset_of!(ProbePayload, seq), PROBE_OFF_SEQ);
        assert_eq!(offset_of!(ProbePayload, send_ns), PROBE_OFF_SEND_NS);
    }

    #[test]
    fn round_trips_in_network_order() {
        let p = ProbePayload::echo(0x0102_0304_0506_0708, 0x0a0b_0c0d, 0x1122_3344_5566_7788);
        let b = p.to_bytes();
        assert_eq!(&b[..4], b"IPMP");
        assert_eq!(&b[4..8], &[0, 0, 0x12, 0x34]);
        assert_eq!(&b[8..16], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&b[16..20], &[0x0a, 0x0b, 0x0c, 0x0d]);
        assert_eq!(
            &b[24..32],
            &[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]
        );
        assert_eq!(ProbePayload::from_bytes(&b), Some(p));
        // Trailing bytes are allowed.
        let mut longer = [0u8; 40];
        longer[..32].copy_from_slice(&b);
        assert_eq!(ProbePayload::from_bytes(&longer), Some(p));
    }

    #[test]
    fn rejects_short_and_foreign_payloads() {
        let b = ProbePayload::echo(1, 2, 3).to_bytes();
        assert_eq!(ProbePayload::from_bytes(&b[..31]), None);
        let mut foreign = b;
        foreign[0] ^= 0x80;
        assert_eq!(ProbePayload::from_bytes(&foreign), None);
        assert_eq!(
            ProbePayload::from_bytes(b"abcdefghijklmnopqrstuvwxyz0123456789"),
            None
        );
    }
}
