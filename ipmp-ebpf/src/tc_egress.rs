use aya_ebpf::{bindings::TC_ACT_SHOT, macros::classifier, programs::TcContext};

#[classifier]
pub fn ipmp_tc_egress(_ctx: TcContext) -> i32 {
    TC_ACT_SHOT
}
