//! The member a member program runs on: its `IPMP_MEMBERS` entry, looked up once per frame and
//! handed to every handler (`member`, `probe`).

use ipmp_common::{MemberInfo, Reason, STATS_SLOT_UNKNOWN};

use crate::{
    frame::Action,
    maps::{IPMP_MEMBERS, Verdict},
};

/// The member a program runs on.
pub struct Member {
    pub ifindex: u32,
    pub info: MemberInfo,
}

impl Member {
    /// The member entry of `ifindex`, or the verdict for a device that has none (any more).
    #[inline(always)]
    pub fn lookup(ifindex: u32) -> Result<Member, Verdict<Action>> {
        // SAFETY: copied at once; updates replace the element under RCU.
        match unsafe { IPMP_MEMBERS.get(ifindex) } {
            Some(info) => Ok(Member {
                ifindex,
                info: *info,
            }),
            None => Err(Verdict::new(
                Action::Pass,
                STATS_SLOT_UNKNOWN,
                Reason::NotMember,
            )),
        }
    }

    #[inline(always)]
    pub fn slot(&self) -> u32 {
        self.info.stats_slot
    }

    #[inline(always)]
    pub fn verdict(&self, action: Action, reason: Reason) -> Verdict<Action> {
        Verdict::new(action, self.slot(), reason)
    }
}
