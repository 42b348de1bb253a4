//! ipmp's eBPF programs, built into one object (`ipmp`) loaded by ipmpd.
//!
//! - `ipmp_tc_egress` (TCX egress on each IPMP interface): per-flow spreading over the group's
//!   active members through the bucket table, next hop from `bpf_fib_lookup`, sent with
//!   `bpf_redirect_neigh`; broadcast/multicast through the cast member.
//! - `ipmp_tc_ingress` (TCX ingress on each member): hands frames for the group's data
//!   addresses, and its broadcast/multicast on the cast member, to the stack through the IPMP
//!   interface; on members without XDP it also gives the member's answers below.
//! - `ipmp_xdp_member` (XDP on members whose driver runs it natively): the member's answers —
//!   ARP/NS for data addresses bound to this member answered, dropped on the others,
//!   broadcast/multicast dropped but on the cast member, echo requests for its data and test
//!   addresses answered, replies to ipmpd's probes timestamped into a ring buffer (`probe`).
//!   `member` holds these decisions once for both hooks (`frame`).
//! - `ipmp_tc_member` (TCX egress on each member): keeps the ARP requests the kernel sends while
//!   resolving a next hop from carrying a data address bound to another member.
#![no_std]
// Inline BPF assembly (`frame::word`): nightly, as the whole eBPF build is.
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]
#![no_main]

mod device;
mod fib;
mod frame;
mod maps;
mod member;
mod noop;
mod parse;
mod path;
mod probe;
mod tc_egress;
mod tc_ingress;
mod tc_member;
mod xdp_member;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any path that reaches this, so it is never taken at run time.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
