//! TCX ingress on every member: hands the frames for the group's data addresses (and its
//! broadcast and multicast, on the cast member) to the stack as received on the IPMP
//! interface, so that reverse-path filtering, firewall rules on `iifname`, tcpdump, sockets
//! bound to the IPMP interface and multicast joins on it see them there (`member::deliver`).
//!
//! The frame leaves through the IPMP interface's veth peer (`MemberInfo::rx_ifindex`): the
//! veth driver counts it as received by the IPMP interface and runs `eth_type_trans` there,
//! which is why a unicast frame gets the IPMP interface's MAC as its destination first
//! (otherwise the stack would see PACKET_OTHERHOST and drop it).
//!
//! On a member without XDP (`MEMBER_F_XDP` clear: veth and other drivers with only generic
//! XDP, whose skb copy for XDP headroom costs more than this program) it gives the member's
//! answers too (`member::respond`), sending them back out of the member; unicast data that
//! none of them concerns (`member::unanswerable`) goes straight to delivery.

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    helpers::generated::bpf_redirect,
    macros::classifier,
    programs::TcContext,
};
use ipmp_common::{MEMBER_F_XDP, Reason, packet::ETH_DST};

use crate::{
    device::Member,
    frame::{Action, Bytes, Frame as _, Tc},
    maps::Verdict,
    member::{deliver, respond, unanswerable},
};

#[classifier]
pub fn ipmp_tc_ingress(ctx: TcContext) -> i32 {
    let f = Tc(&ctx);
    let len = f.len();
    f.pull_headers();
    // SAFETY: the context pointer is valid for the program's run.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let me = match Member::lookup(ifindex) {
        Ok(me) => me,
        Err(verdict) => {
            verdict.finish(len);
            return TC_ACT_OK as i32;
        }
    };
    // With XDP on the member the answers were given there; plain unicast data concerns none
    // of them either way.
    let decided = if me.info.flags & MEMBER_F_XDP != 0 || unanswerable(&f) {
        deliver(&f, &me)
    } else {
        match respond(&f, &me) {
            Ok(Some(verdict)) => Ok(verdict),
            Ok(None) => deliver(&f, &me),
            Err(exit) => Err(exit),
        }
    };
    let verdict = decided.unwrap_or_else(|exit| Verdict::new(Action::Pass, exit.slot, exit.reason));
    let (code, verdict) = apply(&f, &me, verdict);
    verdict.finish(len);
    code
}

/// The TC return code for a verdict, and the verdict to count (a failed rewrite passes the
/// frame to the member instead).
#[inline(always)]
fn apply(f: &Tc, me: &Member, verdict: Verdict<Action>) -> (i32, Verdict<Action>) {
    let pass = TC_ACT_OK as i32;
    let code = match verdict.action {
        Action::Pass => pass,
        Action::Drop => TC_ACT_SHOT as i32,
        Action::Tx => {
            // An answer from the member's MAC, counted here: `ipmp_tc_member` lets it pass.
            f.mark_sent(me.info.mac);
            // SAFETY: plain helper call.
            unsafe { bpf_redirect(me.ifindex, 0) as i32 }
        }
        Action::ToIpmp => {
            let failed = Verdict::new(Action::Pass, me.slot(), Reason::PassError);
            if me.info.rx_ifindex == 0 {
                return (pass, failed);
            }
            if verdict.reason == Reason::RxToIpmp
                && f.store(ETH_DST, &Bytes(me.info.ipmp_mac)).is_err()
            {
                return (pass, failed);
            }
            // SAFETY: plain helper call.
            unsafe { bpf_redirect(me.info.rx_ifindex, 0) as i32 }
        }
    };
    (code, verdict)
}
