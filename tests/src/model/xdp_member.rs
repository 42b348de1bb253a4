//! `ipmp_xdp_member` on a member: the member's answers and filters (`member::respond`);
//! what they leave alone passes to the stack uncounted (TC ingress counts it), and so does
//! everything on a device that is not a member (counted as `NotMember`). Unicast frames that
//! are neither ARP nor ICMP/ICMPv6 right after the IP header cannot concern the answers: they
//! pass uncounted before the member is looked up, on a non-member too.

use ipmp_common::packet::ETH_HLEN;

use super::{
    Outcome, Prediction, World, XDP_DROP, XDP_PASS, XDP_TX,
    decision::{Action, member},
    member::{respond, unanswerable},
};

/// The prediction for a frame member `ifindex` receives.
pub fn predict(w: &World, ifindex: u32, frame: &[u8]) -> Prediction {
    if frame.len() < ETH_HLEN {
        return Prediction::Refused;
    }
    if unanswerable(frame) {
        return Prediction::one(Outcome {
            verdict: XDP_PASS,
            output: frame.to_vec(),
            count: None,
            event: None,
        });
    }
    let me = match member(w, ifindex, frame, XDP_PASS) {
        Ok(me) => me,
        Err(prediction) => return prediction,
    };
    let Some(d) = respond(w, &me, frame) else {
        return Prediction::one(Outcome {
            verdict: XDP_PASS,
            output: frame.to_vec(),
            count: None,
            event: None,
        });
    };
    let verdict = match d.action {
        Action::Drop => XDP_DROP,
        Action::Tx => XDP_TX,
        Action::Pass | Action::ToIpmp => XDP_PASS,
    };
    Prediction::one(Outcome {
        verdict,
        output: d.output,
        count: Some((d.slot, d.reason)),
        event: d.event,
    })
}
