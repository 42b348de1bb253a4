//! The reader of `IPMP_PROBES`: probe replies that XDP recognised and timestamped
//! (`bpf_ktime_get_ns`, CLOCK_MONOTONIC) before the stack saw them. Their timestamps make
//! NETRTT independent of how busy ipmpd is.

use std::{
    io,
    path::Path,
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use ipmp_common::ProbeEvent;
use tokio::io::{Interest, unix::AsyncFd};

use crate::dataplane::{DataplaneError, open_probe_ring};

/// The pinned ring buffer, registered with tokio.
pub struct ProbeRing {
    fd: AsyncFd<RingBuf<MapData>>,
}

impl ProbeRing {
    /// Opens `IPMP_PROBES` under `pin_dir`. Events already queued (from before this start)
    /// are left for the first read, which the prober judges like any other reply.
    pub fn open(pin_dir: &Path) -> Result<Self, RingError> {
        let ring = open_probe_ring(pin_dir).map_err(RingError::Open)?;
        // SAFETY: the RingBuf owns its map fd for as long as the AsyncFd owns the RingBuf, and
        // nothing replaces it.
        let fd = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(|e| RingError::Register(e.into()))?;
        Ok(Self { fd })
    }

    /// Waits until events are queued and returns all of them.
    pub async fn next_batch(&mut self) -> io::Result<Vec<ProbeEvent>> {
        loop {
            let mut guard = self.fd.readable_mut().await?;
            let out = drain(guard.get_inner_mut());
            guard.clear_ready();
            if !out.is_empty() {
                return Ok(out);
            }
        }
    }

    /// The events queued now, without waiting (before a probe timeout is judged, so that a
    /// reply XDP already saw is not declared lost).
    pub fn drain_now(&mut self) -> Vec<ProbeEvent> {
        drain(self.fd.get_mut())
    }
}

fn drain(ring: &mut RingBuf<MapData>) -> Vec<ProbeEvent> {
    let mut out = Vec::new();
    while let Some(item) = ring.next() {
        if let Some(ev) = decode(&item) {
            out.push(ev);
        }
    }
    out
}

/// One record, if it has the size of a [`ProbeEvent`].
fn decode(bytes: &[u8]) -> Option<ProbeEvent> {
    if bytes.len() < size_of::<ProbeEvent>() {
        return None;
    }
    // SAFETY: ProbeEvent is plain old data (#[repr(C)], integers and byte arrays), and the
    // buffer holds at least its size; read_unaligned copes with any alignment.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<ProbeEvent>()) })
}

/// CLOCK_MONOTONIC now, in ns: the clock of `bpf_ktime_get_ns` and of `Instant` on Linux.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// The `Instant` of a `bpf_ktime_get_ns` timestamp (clamped to now if it lies ahead).
pub fn instant_of(rx_ns: u64) -> Instant {
    let now = Instant::now();
    let ago = monotonic_ns().saturating_sub(rx_ns);
    now.checked_sub(Duration::from_nanos(ago)).unwrap_or(now)
}

/// The ring could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    #[error("probe ring buffer: {0}")]
    Open(#[source] DataplaneError),
    #[error("probe ring buffer: cannot register with the event loop: {0}")]
    Register(#[source] io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_map_onto_instants() {
        let before = Instant::now();
        let ns = monotonic_ns();
        let at = instant_of(ns);
        let after = Instant::now();
        // Same clock: the conversion lands between the two reads (a little slack for the
        // nanoseconds between the clock reads).
        assert!(at + Duration::from_millis(1) >= before && at <= after);
        let earlier = instant_of(ns - 5_000_000);
        let d = at.duration_since(earlier);
        assert!(
            d >= Duration::from_millis(4) && d <= Duration::from_millis(6),
            "{d:?}"
        );
        // A timestamp in the future is clamped to now.
        assert!(instant_of(u64::MAX) <= Instant::now());
    }

    #[test]
    fn short_records_are_skipped() {
        assert!(decode(&[0u8; 8]).is_none());
        let ev = ProbeEvent {
            rx_ns: 42,
            seq: 7,
            ..ProbeEvent::default()
        };
        // SAFETY: viewing a POD value as bytes.
        let bytes = unsafe {
            std::slice::from_raw_parts((&raw const ev).cast::<u8>(), size_of::<ProbeEvent>())
        };
        assert_eq!(decode(bytes), Some(ev));
    }
}
