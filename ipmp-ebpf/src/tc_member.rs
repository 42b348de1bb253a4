use aya_ebpf::{bindings::TC_ACT_OK, macros::classifier, programs::TcContext};

#[classifier]
pub fn ipmp_tc_member(_ctx: TcContext) -> i32 {
    TC_ACT_OK
}
