//! Reference programs for `cargo xtask bench` only; ipmpd never loads or attaches them.
//! BPF_PROG_TEST_RUN runs them beside ipmp's programs, loaded from the same object in the same
//! run, so that the per-packet cost of ipmp's work can be stated against:
//! - the no-op of each program type (`ipmp_tc_noop`, `ipmp_xdp_noop`): what the test harness and
//!   the program type cost alone;
//! - `ipmp_tc_fibref`: the kernel work any TC program that forwards to a next hop must do —
//!   parse the packet, `bpf_fib_lookup`, `bpf_redirect_neigh` — with ipmp's own work (group,
//!   flow hash, bucket and member lookups, counters) left out.

use aya_ebpf::{
    bindings::{TC_ACT_SHOT, xdp_action::XDP_PASS},
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use ipmp_common::packet::{ETH_HLEN, ETH_PROTO};

use crate::{
    fib::next_hop,
    parse::{be16, head_bytes, tc_flow},
};

/// The TC no-op: lets every packet through untouched. It returns TCX_NEXT (the next program
/// on the hook, or the default, decides), so the benchmark can also attach it in front of
/// ipmp's programs under live traffic.
#[classifier]
pub fn ipmp_tc_noop(_ctx: TcContext) -> i32 {
    TCX_NEXT
}

/// `TCX_NEXT` of `enum tcx_action_base` (kernel 6.6+; `TC_ACT_UNSPEC` for classic TC).
const TCX_NEXT: i32 = -1;

/// The XDP no-op: passes every packet to the stack untouched.
#[xdp]
pub fn ipmp_xdp_noop(_ctx: XdpContext) -> u32 {
    XDP_PASS
}

/// Parse, next hop from the FIB (as `ipmp_tc_egress` asks it), redirect to the device the
/// packet came from: the helpers' share of `ipmp_tc_egress`.
#[classifier]
pub fn ipmp_tc_fibref(ctx: TcContext) -> i32 {
    // SAFETY: the context pointer is valid for the program's run.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let Some(eth) = head_bytes::<ETH_HLEN>(&ctx, 0) else {
        return TC_ACT_SHOT as i32;
    };
    let Ok(flow) = tc_flow(&ctx, be16([eth[ETH_PROTO], eth[ETH_PROTO + 1]])) else {
        return TC_ACT_SHOT as i32;
    };
    match next_hop(&ctx, ifindex, &flow) {
        Ok(next_hop) => next_hop.redirect_neigh(ifindex) as i32,
        Err(_) => TC_ACT_SHOT as i32,
    }
}
