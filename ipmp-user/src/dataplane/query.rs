//! Which programs are attached to an interface's TCX hook, asked with `BPF_PROG_QUERY`
//! directly: aya's `query_tcx` also opens each program by id, which needs CAP_SYS_ADMIN, and
//! ipmpd's unit runs without it (the query itself needs CAP_NET_ADMIN only).

use std::io;

/// `BPF_PROG_QUERY` (`enum bpf_cmd`).
const BPF_PROG_QUERY: libc::c_long = 16;
/// `BPF_TCX_INGRESS` and `BPF_TCX_EGRESS` (`enum bpf_attach_type`).
pub(super) const BPF_TCX_INGRESS: u32 = 46;
pub(super) const BPF_TCX_EGRESS: u32 = 47;
/// Programs one hook may hold before the query reports ENOSPC; far more than ipmp attaches.
const MAX_PROGS: usize = 64;

/// `bpf_attr.query` as the kernel lays it out (64 bytes).
#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_ifindex: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    count: u32,
    _pad: u32,
    prog_attach_flags: u64,
    link_ids: u64,
    link_attach_flags: u64,
    revision: u64,
}

/// The ids of the programs attached to `ifindex` at TCX hook `attach_type`.
pub(super) fn tcx_prog_ids(ifindex: u32, attach_type: u32) -> io::Result<Vec<u32>> {
    let mut ids = [0u32; MAX_PROGS];
    let mut attr = QueryAttr {
        target_ifindex: ifindex,
        attach_type,
        prog_ids: ids.as_mut_ptr() as u64,
        count: MAX_PROGS as u32,
        ..QueryAttr::default()
    };
    // SAFETY: `attr` is a valid bpf_attr prefix of the size passed; the kernel writes at most
    // `count` ids into `ids`, which outlives the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_QUERY,
            &mut attr as *mut QueryAttr,
            size_of::<QueryAttr>() as libc::c_uint,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = (attr.count as usize).min(MAX_PROGS);
    Ok(ids[..n].to_vec())
}
