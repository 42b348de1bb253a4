//! `ipmp_tc_ingress` on a member: on a member without XDP (`MEMBER_F_XDP` clear) the
//! member's answers first (`member::respond`), then delivery (`member::deliver`): answers
//! leave through the member (redirect), frames for the IPMP interface are redirected to its
//! veth peer (`rx_ifindex`) with the IPMP interface's MAC as destination for unicast, and
//! pass unchanged (`PassError`) while that peer is not known.

use ipmp_common::{MEMBER_F_XDP, Reason};

use super::{
    Outcome, Prediction, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, World,
    decision::{Action, member},
    member::{deliver, respond},
};

/// The prediction for a frame member `ifindex` receives.
pub fn predict(w: &World, ifindex: u32, frame: &[u8]) -> Prediction {
    if super::skb_test_run_refuses(frame) {
        return Prediction::Refused;
    }
    let me = match member(w, ifindex, frame, TC_ACT_OK) {
        Ok(me) => me,
        Err(prediction) => return prediction,
    };
    let d = if me.info.flags & MEMBER_F_XDP != 0 {
        deliver(w, &me, frame)
    } else {
        respond(w, &me, frame).unwrap_or_else(|| deliver(w, &me, frame))
    };
    let (verdict, output, count) = match d.action {
        Action::Pass => (TC_ACT_OK, d.output, (d.slot, d.reason)),
        Action::Drop => (TC_ACT_SHOT, d.output, (d.slot, d.reason)),
        Action::Tx => (TC_ACT_REDIRECT, d.output, (d.slot, d.reason)),
        Action::ToIpmp if me.info.rx_ifindex == 0 => (
            TC_ACT_OK,
            frame.to_vec(),
            (me.info.stats_slot, Reason::PassError),
        ),
        Action::ToIpmp => {
            let mut output = d.output;
            if d.reason == Reason::RxToIpmp {
                output[..6].copy_from_slice(&me.info.ipmp_mac);
            }
            (TC_ACT_REDIRECT, output, (d.slot, d.reason))
        }
    };
    Prediction::one(Outcome {
        verdict,
        output,
        count: Some(count),
        event: d.event,
    })
}
