//! The data plane: loading, attaching and pinning the eBPF programs, and the dataplane writer,
//! the only code that touches the maps.

/// The eBPF object built from ipmp-ebpf (empty when built with AYA_BUILD_SKIP=1).
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ipmp"));
