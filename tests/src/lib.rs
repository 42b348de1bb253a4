//! ipmp's test lab (network namespaces), packet and pcap helpers, the model of the eBPF
//! programs and its packet generators, and the benchmark suite.

pub mod bench;
pub mod fuzz;
pub mod model;
pub mod openmetrics;
pub mod packets;
pub mod prog_lab;
pub mod testrun;

/// The lab and the pcap reader live in their own crate (xtask uses them too).
pub use ipmp_lab::{self as lab, pcap};
