//! XDP on a member NIC whose driver runs XDP natively (or where `xdp_mode` asks for it): gives
//! the member's answers (`member::respond`: ARP/NDP for bound data addresses, echo, probe
//! replies, the cast filter) at the driver, before an skb exists. Everything else goes on to
//! `ipmp_tc_ingress`, which delivers it (and counts it); frames none of the answers concern
//! (`member::unanswerable`: unicast data) pass before the member is looked up.

use aya_ebpf::{
    bindings::xdp_action::{XDP_DROP, XDP_PASS, XDP_TX},
    macros::xdp,
    programs::XdpContext,
};

use crate::{
    device::Member,
    frame::{Action, Frame as _, Xdp},
    maps::Verdict,
    member::{respond, unanswerable},
};

#[xdp]
pub fn ipmp_xdp_member(ctx: XdpContext) -> u32 {
    let f = Xdp(&ctx);
    if unanswerable(&f) {
        return XDP_PASS;
    }
    let len = f.len();
    let me = match Member::lookup(ctx.ingress_ifindex() as u32) {
        Ok(me) => me,
        Err(verdict) => return action(verdict.finish(len)),
    };
    match respond(&f, &me) {
        Ok(Some(verdict)) => action(verdict.finish(len)),
        Ok(None) => XDP_PASS,
        Err(exit) => action(Verdict::new(Action::Pass, exit.slot, exit.reason).finish(len)),
    }
}

#[inline(always)]
fn action(action: Action) -> u32 {
    match action {
        Action::Drop => XDP_DROP,
        Action::Tx => XDP_TX,
        // `respond` never delivers; TC ingress does.
        Action::Pass | Action::ToIpmp => XDP_PASS,
    }
}
