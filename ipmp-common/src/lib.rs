//! Types shared by the ipmp eBPF programs (`ipmp-ebpf`) and the userspace tools (`ipmp-user`).
//!
//! Everything here is `no_std` so the same definitions compile for the BPF target and for the
//! host: map layouts, the per-packet reason codes, and the flow hash that picks a bucket.
#![no_std]

pub mod flow;
pub mod maps;
pub mod packet;
pub mod reason;

pub use flow::{FlowKey, bucket_of, flow_hash};
pub use maps::*;
pub use reason::Reason;
