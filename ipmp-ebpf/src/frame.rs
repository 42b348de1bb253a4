//! One view of a received frame for the member programs, whichever hook they run at: XDP
//! (`ipmp_xdp_member`) or TC ingress (`ipmp_tc_ingress`). The decisions in `member` and
//! `probe` are written once against [`Frame`]; each hook maps their [`Action`] to its own
//! return codes.
//!
//! Reads are bounds-checked copies to the stack. Writes go through [`Frame::store`], a store
//! into the frame at both hooks. At TC a direct packet write makes the verifier prepend an
//! unclone of every cloned skb to the program (`bpf_skb_pull_data(skb, 0)`), and received
//! frames are cloned whole while a packet socket (tcpdump) listens on the member. The frames
//! the program writes (data handed to the IPMP interface, answers) would be copied by
//! `bpf_skb_store_bytes` too; only the frames it passes untouched to the member's own stack
//! (ARP, neighbour discovery, test-address traffic) are copied in vain, and only while
//! something captures on the member. The helper's call and memcpy are saved on every frame
//! handed to the IPMP interface. `ipmp_tc_egress` stores the MACs of every frame it sends
//! through [`Tc`] too: the prologue costs it nothing more, since TCP's clones share only their
//! payload (their headers are private, nothing is copied), and the helper's memcpy
//! (`rep movsb` here) was slow when the frame lay just after the source modulo 4 KiB.

use aya_ebpf::{
    helpers::generated::{bpf_skb_change_tail, bpf_xdp_adjust_tail},
    programs::{TcContext, XdpContext},
};
use ipmp_common::{Reason, packet::ETH_ALEN};

use crate::maps::{Exit, Verdict};

/// What a member program does with a frame.
#[repr(u8)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// To the member's own stack.
    Pass,
    Drop,
    /// Back out of the member it arrived on (the frame was rewritten into an answer).
    Tx,
    /// To the stack as received on the group's IPMP interface.
    ToIpmp,
}

impl Action {
    #[inline(always)]
    const fn from_bits(bits: u64) -> Action {
        match bits & 3 {
            0 => Action::Pass,
            1 => Action::Drop,
            2 => Action::Tx,
            _ => Action::ToIpmp,
        }
    }
}

/// A handler's `Result<Option<Verdict>, Exit>` packed into one register. A BPF subprogram
/// returns in r0 alone: a larger return value goes through the stack, and a callee that
/// leaves a pointer to its own stack in r0 is refused ("cannot return stack pointer to the
/// caller").
#[derive(Clone, Copy)]
pub struct Outcome(u64);

impl Outcome {
    const NONE: u64 = 0;
    const VERDICT: u64 = 1;
    const EXIT: u64 = 2;

    #[inline(always)]
    const fn pack(kind: u64, action: Action, slot: u32, reason: Reason) -> Outcome {
        Outcome(slot as u64 | (reason as u64) << 32 | (action as u64) << 48 | kind << 56)
    }

    #[inline(always)]
    pub fn new(result: Result<Option<Verdict<Action>>, Exit>) -> Outcome {
        match result {
            Ok(None) => Outcome(Self::NONE << 56),
            Ok(Some(v)) => Self::pack(Self::VERDICT, v.action, v.slot, v.reason),
            Err(e) => Self::pack(Self::EXIT, Action::Pass, e.slot, e.reason),
        }
    }

    #[inline(always)]
    pub fn get(self) -> Result<Option<Verdict<Action>>, Exit> {
        let slot = self.0 as u32;
        // Only ever packed from a `Reason`; the fallback is never taken.
        let reason = Reason::from_u32((self.0 >> 32) as u32 & 0xffff).unwrap_or(Reason::PassError);
        match self.0 >> 56 {
            Self::NONE => Ok(None),
            Self::VERDICT => Ok(Some(Verdict::new(
                Action::from_bits(self.0 >> 48),
                slot,
                reason,
            ))),
            _ => Err(Exit::new(slot, reason)),
        }
    }
}

/// Bytes of a frame on the stack, 4-aligned so that they move to and from the frame a word at
/// a time ([`word`]); a `[u8; N]` of alignment 1 would move byte by byte.
#[repr(C, align(4))]
#[derive(Clone, Copy)]
pub struct Bytes<const N: usize>(pub [u8; N]);

impl<const N: usize> core::ops::Deref for Bytes<N> {
    type Target = [u8; N];

    #[inline(always)]
    fn deref(&self) -> &[u8; N] {
        &self.0
    }
}

impl<const N: usize> core::ops::DerefMut for Bytes<N> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut [u8; N] {
        &mut self.0
    }
}

impl<const N: usize> Bytes<N> {
    /// Word `i` (bytes `4 i .. 4 i + 4`).
    #[inline(always)]
    fn word(&self, i: usize) -> u32 {
        const { assert!(N >= 4) };
        assert!(4 * i + 4 <= N);
        // SAFETY: in bounds (checked); the struct is 4-aligned.
        unsafe { self.0.as_ptr().cast::<u32>().add(i).read() }
    }

    /// Sets word `i` (bytes `4 i .. 4 i + 4`).
    #[inline(always)]
    pub fn set_word(&mut self, i: usize, word: u32) {
        assert!(4 * i + 4 <= N);
        // SAFETY: in bounds (checked); the struct is 4-aligned.
        unsafe { self.0.as_mut_ptr().cast::<u32>().add(i).write(word) }
    }
}

/// A received frame at XDP or at TC ingress.
pub trait Frame {
    /// The frame's first and one-past-last directly readable byte.
    fn start(&self) -> usize;
    fn end(&self) -> usize;
    /// Length of the whole frame (at TC, including what is not in the linear part).
    fn len(&self) -> u32;

    /// The `N` bytes at `offset`, in place; `None` when the frame (at TC: its linear part,
    /// see [`Tc::pull_headers`]) is shorter. Valid until the next `store` or `resize`, which
    /// the verifier enforces: it invalidates every packet pointer at those helpers.
    fn peek<const N: usize>(&self, offset: usize) -> Option<&[u8; N]>;

    /// The `N` bytes at `offset` copied to the stack, a word at a time; `None` as [`peek`].
    ///
    /// [`peek`]: Frame::peek
    #[inline(always)]
    fn copy<const N: usize>(&self, offset: usize) -> Option<Bytes<N>> {
        let (start, end) = (self.start(), self.end());
        if start + offset + N > end {
            return None;
        }
        let mut out = core::mem::MaybeUninit::<Bytes<N>>::uninit();
        let words = out.as_mut_ptr().cast::<u32>();
        let bytes = out.as_mut_ptr().cast::<u8>();
        let mut i = 0;
        while i + 4 <= N {
            // SAFETY: in bounds of the frame (checked above) and of `out` (4-aligned).
            unsafe { words.add(i / 4).write(word::load(start + offset + i)) };
            i += 4;
        }
        while i < N {
            // SAFETY: as above, one byte.
            unsafe { bytes.add(i).write(*((start + offset + i) as *const u8)) };
            i += 1;
        }
        // SAFETY: every byte was written.
        Some(unsafe { out.assume_init() })
    }

    /// The `N` words at `offset` (see [`word`]); `None` as [`peek`].
    ///
    /// [`peek`]: Frame::peek
    #[inline(always)]
    fn peek_words<const N: usize>(&self, offset: usize) -> Option<[u32; N]> {
        direct_words(self.start(), self.end(), offset)
    }

    /// Writes `bytes` at `offset`.
    fn store<const N: usize>(&self, offset: usize, bytes: &Bytes<N>) -> Result<(), ()>;

    /// Makes the frame exactly `len` bytes long (its start stays).
    fn resize(&self, len: u32) -> Result<(), ()>;
}

/// The `N` bytes at `offset` of the directly readable part, if it holds them.
#[inline(always)]
fn direct<'a, const N: usize>(start: usize, end: usize, offset: usize) -> Option<&'a [u8; N]> {
    if start + offset + N > end {
        return None;
    }
    // SAFETY: in bounds of the packet (checked against its end above), which lives for the
    // program's run; byte arrays need no alignment.
    Some(unsafe { &*((start + offset) as *const [u8; N]) })
}

/// Whole 32-bit loads and stores at any address of a frame. LLVM's BPF backend splits an
/// access it cannot prove aligned into single bytes (a load or store per byte, plus the
/// shifts that put a word together); the BPF ISA has no alignment rule for packet memory where
/// the CPU accesses unaligned words efficiently (the verifier is strict only with
/// `BPF_F_STRICT_ALIGNMENT` or without `CONFIG_HAVE_EFFICIENT_UNALIGNED_ACCESS`, which x86-64
/// and arm64 have), so the instruction is written out. A word holds its 4 bytes in frame
/// order: `u32::from_ne_bytes` of them.
mod word {
    /// # Safety
    /// `addr..addr + 4` is in bounds of the frame.
    #[cfg(target_arch = "bpf")]
    #[inline(always)]
    pub unsafe fn load(addr: usize) -> u32 {
        let word: u64;
        // SAFETY: in bounds (the caller's contract); a plain load, no stack, no flags.
        unsafe {
            core::arch::asm!(
                "{w} = *(u32 *)({a} + 0)",
                w = lateout(reg) word,
                a = in(reg) addr,
                options(readonly, nostack, preserves_flags)
            );
        }
        word as u32
    }

    /// # Safety
    /// `addr..addr + 4` is in bounds of the frame, which the program may write.
    #[cfg(target_arch = "bpf")]
    #[inline(always)]
    pub unsafe fn store(addr: usize, word: u32) {
        // SAFETY: in bounds and writable (the caller's contract).
        unsafe {
            core::arch::asm!(
                "*(u32 *)({a} + 0) = {w}",
                a = in(reg) addr,
                w = in(reg) u64::from(word),
                options(nostack, preserves_flags)
            );
        }
    }

    /// # Safety
    /// As the BPF version.
    #[cfg(not(target_arch = "bpf"))]
    #[inline(always)]
    pub unsafe fn load(addr: usize) -> u32 {
        // SAFETY: in bounds (the caller's contract); unaligned read.
        unsafe { core::ptr::read_unaligned(addr as *const u32) }
    }

    /// # Safety
    /// As the BPF version.
    #[cfg(not(target_arch = "bpf"))]
    #[inline(always)]
    pub unsafe fn store(addr: usize, word: u32) {
        // SAFETY: in bounds and writable (the caller's contract); unaligned write.
        unsafe { core::ptr::write_unaligned(addr as *mut u32, word) }
    }
}

/// The `N` words at `offset` of the directly readable part, if it holds them.
#[inline(always)]
fn direct_words<const N: usize>(start: usize, end: usize, offset: usize) -> Option<[u32; N]> {
    if start + offset + 4 * N > end {
        return None;
    }
    let mut words = [0u32; N];
    let mut i = 0;
    while i < N {
        // SAFETY: in bounds of the packet (checked against its end above).
        words[i] = unsafe { word::load(start + offset + 4 * i) };
        i += 1;
    }
    Some(words)
}

/// Writes `bytes` at `offset` of the directly writable part, if it holds them, a word at a
/// time.
#[inline(always)]
fn write_direct<const N: usize>(
    start: usize,
    end: usize,
    offset: usize,
    bytes: &Bytes<N>,
) -> Result<(), ()> {
    if start + offset + N > end {
        return Err(());
    }
    let mut i = 0;
    while i + 4 <= N {
        // SAFETY: in bounds of the frame (checked above), which the program may write.
        unsafe { word::store(start + offset + i, bytes.word(i / 4)) };
        i += 4;
    }
    while i < N {
        // SAFETY: as above, one byte.
        unsafe { *((start + offset + i) as *mut u8) = bytes.0[i] };
        i += 1;
    }
    Ok(())
}

pub struct Xdp<'a>(pub &'a XdpContext);

// The context's `data`/`data_end` are read with volatile loads: otherwise LLVM hands them
// to the handler subprograms as 32-bit arguments and zero-extends them there, pointer
// arithmetic the verifier refuses ("pointer arithmetic with <<= operator prohibited").

impl Frame for Xdp<'_> {
    #[inline(always)]
    fn start(&self) -> usize {
        // SAFETY: the context pointer is valid for the program's run.
        unsafe { core::ptr::read_volatile(&raw const (*self.0.ctx).data) as usize }
    }

    #[inline(always)]
    fn end(&self) -> usize {
        // SAFETY: as above.
        unsafe { core::ptr::read_volatile(&raw const (*self.0.ctx).data_end) as usize }
    }

    #[inline(always)]
    fn len(&self) -> u32 {
        self.end().saturating_sub(self.start()) as u32
    }

    #[inline(always)]
    fn peek<const N: usize>(&self, offset: usize) -> Option<&[u8; N]> {
        direct(self.start(), self.end(), offset)
    }

    #[inline(always)]
    fn store<const N: usize>(&self, offset: usize, bytes: &Bytes<N>) -> Result<(), ()> {
        write_direct(self.start(), self.end(), offset, bytes)
    }

    #[inline(always)]
    fn resize(&self, len: u32) -> Result<(), ()> {
        let delta = len as i32 - self.len() as i32;
        if delta == 0 {
            return Ok(());
        }
        // SAFETY: plain helper call; callers derive every packet pointer again afterwards.
        match unsafe { bpf_xdp_adjust_tail(self.0.ctx, delta) } {
            0 => Ok(()),
            _ => Err(()),
        }
    }
}

pub struct Tc<'a>(pub &'a TcContext);

/// The most the member programs read of a frame: Ethernet, IPv6, echo header and a probe
/// payload.
pub const HEADERS: u32 = (ipmp_common::packet::ICMP6
    + ipmp_common::packet::ECHO_HLEN
    + ipmp_common::PROBE_PAYLOAD_LEN) as u32;

impl Tc<'_> {
    /// Marks the frame as decided and counted by an ipmp program, for `ipmp_tc_member` on the
    /// member it leaves through with source MAC `mac` (`ipmp_common::SENT_MARK`).
    #[inline(always)]
    pub fn mark_sent(&self, mac: [u8; ETH_ALEN]) {
        let mark = ipmp_common::sent_mark(mac);
        // SAFETY: the context pointer is valid for the program's run; TC programs may write cb.
        unsafe {
            let cb = &raw mut (*self.0.skb.skb).cb;
            (*cb)[0] = mark[0];
            (*cb)[1] = mark[1];
            (*cb)[2] = mark[2];
        }
    }

    /// Makes the first [`HEADERS`] bytes (or the whole frame, when shorter) directly
    /// readable. Headers usually are in the linear part already; when they are not, they are
    /// pulled in once here, before any pointer into the frame is taken.
    #[inline(always)]
    pub fn pull_headers(&self) {
        let want = if self.len() < HEADERS {
            self.len()
        } else {
            HEADERS
        };
        if ((self.end() - self.start()) as u32) < want {
            let _ = self.0.pull_data(want);
        }
    }
}

impl Frame for Tc<'_> {
    #[inline(always)]
    fn start(&self) -> usize {
        // SAFETY: the context pointer is valid for the program's run.
        unsafe { core::ptr::read_volatile(&raw const (*self.0.skb.skb).data) as usize }
    }

    #[inline(always)]
    fn end(&self) -> usize {
        // SAFETY: as above.
        unsafe { core::ptr::read_volatile(&raw const (*self.0.skb.skb).data_end) as usize }
    }

    #[inline(always)]
    fn len(&self) -> u32 {
        self.0.len()
    }

    #[inline(always)]
    fn peek<const N: usize>(&self, offset: usize) -> Option<&[u8; N]> {
        direct(self.start(), self.end(), offset)
    }

    #[inline(always)]
    fn store<const N: usize>(&self, offset: usize, bytes: &Bytes<N>) -> Result<(), ()> {
        write_direct(self.start(), self.end(), offset, bytes)
    }

    #[inline(always)]
    fn resize(&self, len: u32) -> Result<(), ()> {
        if len == self.len() {
            return Ok(());
        }
        // SAFETY: plain helper call; callers derive every packet pointer again afterwards.
        match unsafe { bpf_skb_change_tail(self.0.skb.skb, len, 0) } {
            0 => Ok(()),
            _ => Err(()),
        }
    }
}

/// Whether the 6 bytes at `at` of `b` are `mac` (byte by byte: no `bcmp` call in BPF).
#[inline(always)]
pub fn mac_eq<const N: usize>(b: &[u8; N], at: usize, mac: [u8; ETH_ALEN]) -> bool {
    let mut diff = 0;
    let mut i = 0;
    while i < ETH_ALEN {
        diff |= b[at + i] ^ mac[i];
        i += 1;
    }
    diff == 0
}

#[inline(always)]
pub fn be32<const N: usize>(b: &[u8; N], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline(always)]
pub fn be64<const N: usize>(b: &[u8; N], at: usize) -> u64 {
    (u64::from(be32(b, at)) << 32) | u64::from(be32(b, at + 4))
}

/// `N` bytes of `b` from `at` (a constant-size copy the BPF backend expands inline).
#[inline(always)]
pub fn take<const N: usize, const M: usize>(b: &[u8; M], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&b[at..at + N]);
    out
}

/// One's complement sum folded to 16 bits and complemented.
#[inline(always)]
pub fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// RFC 1624 eqn. 3: the checksum `check` after a 16-bit word changed from `old` to `new`.
#[inline(always)]
pub fn csum_replace(check: u16, old: u16, new: u16) -> u16 {
    fold(u32::from(!check) + u32::from(!old) + u32::from(new))
}
