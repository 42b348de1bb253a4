//! A member program's decision about a frame, shared by the member models (`member`,
//! `probe`) and mapped to return codes by each hook's model.

use ipmp_common::{MemberInfo, ProbeEvent, Reason, STATS_SLOT_UNKNOWN};

use super::{Outcome, Prediction, World};

/// The member a program runs on.
#[derive(Debug, Clone, Copy)]
pub struct Member {
    pub ifindex: u32,
    pub info: MemberInfo,
}

/// What a member program does with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// To the member's own stack.
    Pass,
    Drop,
    /// Back out of the member (the frame rewritten into an answer).
    Tx,
    /// Into the stack through the IPMP interface.
    ToIpmp,
}

/// A decision: the action, the counter, the frame after it and a probe record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    pub slot: u32,
    pub reason: Reason,
    pub output: Vec<u8>,
    pub event: Option<ProbeEvent>,
}

impl Member {
    pub fn decide(&self, action: Action, reason: Reason, frame: &[u8]) -> Decision {
        Decision {
            action,
            slot: self.info.stats_slot,
            reason,
            output: frame.to_vec(),
            event: None,
        }
    }
}

/// A probe record of this member (`rx_ns` left 0: it is not compared).
pub fn event(me: &Member, family: u32, kind: u32) -> ProbeEvent {
    ProbeEvent {
        ifindex: me.ifindex,
        family,
        kind,
        ..ProbeEvent::default()
    }
}

/// The member entry of `ifindex`, or the prediction for a device without one: passed
/// (`pass`), counted as `NotMember`.
pub fn member(w: &World, ifindex: u32, frame: &[u8], pass: u32) -> Result<Member, Prediction> {
    match w.members.get(&ifindex) {
        Some(&info) => Ok(Member { ifindex, info }),
        None => Err(Prediction::one(Outcome {
            verdict: pass,
            output: frame.to_vec(),
            count: Some((STATS_SLOT_UNKNOWN, Reason::NotMember)),
            event: None,
        })),
    }
}
