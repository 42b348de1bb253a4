//! One BPF_PROG_TEST_RUN of a TC or XDP program with the device context the programs read
//! (shared by the packet fixtures and the per-packet benchmark).

use std::time::Duration;

use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf, TestRun as _, TestRunOptions,
    programs::{SchedClassifier, Xdp},
};

/// The program type, which decides the context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgKind {
    Tc,
    Xdp,
}

/// What one test run returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRunOut {
    pub verdict: u32,
    /// The packet as the program left it.
    pub output: Vec<u8>,
    /// The kernel's time per run (over `repeat` runs).
    pub duration: Duration,
}

/// Runs program `name` (already loaded) `repeat` times on `input`, on device `ifindex` (the
/// skb's device for TC, the ingress device for XDP).
pub fn test_run(
    ebpf: &mut Ebpf,
    name: &str,
    kind: ProgKind,
    ifindex: u32,
    input: &[u8],
    repeat: u32,
) -> anyhow::Result<TestRunOut> {
    let mut out = vec![0u8; (input.len() + 256).max(4096)];
    let program = ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow!("the eBPF object has no program {name} (rebuild ipmp-ebpf)"))?;
    let result = match kind {
        ProgKind::Tc => {
            // struct __sk_buff up to and including `ifindex` (offset 40): the kernel takes a
            // shorter context as zero-filled and gives the skb that device.
            let mut ctx = [0u8; 44];
            ctx[40..44].copy_from_slice(&ifindex.to_ne_bytes());
            let p: &mut SchedClassifier = program.try_into()?;
            p.test_run(TestRunOptions {
                data_in: Some(input),
                data_out: Some(&mut out),
                ctx_in: Some(&ctx),
                repeat,
                ..TestRunOptions::default()
            })
        }
        ProgKind::Xdp => {
            // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index,
            // egress_ifindex.
            let mut ctx = [0u8; 24];
            ctx[4..8].copy_from_slice(&(input.len() as u32).to_ne_bytes());
            ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
            let p: &mut Xdp = program.try_into()?;
            p.test_run(TestRunOptions {
                data_in: Some(input),
                data_out: Some(&mut out),
                ctx_in: Some(&ctx),
                repeat,
                ..TestRunOptions::default()
            })
        }
    }
    .with_context(|| format!("BPF_PROG_TEST_RUN of {name}"))?;
    out.truncate(result.data_size_out as usize);
    Ok(TestRunOut {
        verdict: result.return_value,
        output: out,
        duration: result.duration,
    })
}
