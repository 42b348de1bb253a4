//! Types shared by the ipmp eBPF programs (`ipmp-ebpf`) and the userspace tools (`ipmp-user`).
//!
//! Everything here is `no_std` so the same definitions compile for the BPF target and for the
//! host: map layouts, the per-packet reason codes, the flow hash that picks a bucket, and the
//! payload of the prober's echo probes.
#![no_std]

pub mod flow;
pub mod maps;
pub mod packet;
pub mod probe;
pub mod reason;

pub use flow::{FlowKey, bucket_of, flow_hash};
pub use maps::*;
pub use probe::{PROBE_MSG_ECHO, PROBE_PAYLOAD_LEN, ProbePayload};
pub use reason::Reason;
