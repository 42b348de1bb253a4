use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

#[xdp]
pub fn ipmp_xdp_member(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}
