//! ipmp's eBPF programs, built into one object (`ipmp`) loaded by ipmpd.
//!
//! - `ipmp_tc_egress` (TCX egress on each IPMP interface): per-flow spreading over the group's
//!   active members through the bucket table, next hop from `bpf_fib_lookup`, sent with
//!   `bpf_redirect_neigh`; broadcast/multicast through the cast member.
//! - `ipmp_xdp_member` (XDP on each member): answers ARP/NS for data addresses bound to this
//!   member, drops them on the others, passes broadcast/multicast only on the cast member;
//!   answers echo requests for its data and test addresses and timestamps replies to ipmpd's
//!   probes into a ring buffer (`xdp_probe`).
//! - `ipmp_tc_member` (TCX egress on each member): keeps the ARP requests the kernel sends while
//!   resolving a next hop from carrying a data address bound to another member.
#![no_std]
#![no_main]

mod maps;
mod noop;
mod parse;
mod tc_egress;
mod tc_member;
mod xdp_member;
mod xdp_probe;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any path that reaches this, so it is never taken at run time.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
