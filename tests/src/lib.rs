//! ipmp's test lab (network namespaces), packet and pcap helpers, and the benchmark suite.

pub mod bench;
pub mod lab;
pub mod packets;
pub mod pcap;
pub mod testrun;
