//! `BPF_MAP_UPDATE_BATCH` (kernel 5.6): many elements of a map written with one `bpf()` call.
//! aya 0.14 has no batch operations, so this is the raw syscall, for the bucket table: a
//! failover rewrites a whole half in one call instead of one call per bucket.

use std::os::fd::{AsRawFd as _, BorrowedFd};

/// `enum bpf_cmd` value of `BPF_MAP_UPDATE_BATCH` (include/uapi/linux/bpf.h).
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;

/// The `batch` member of `union bpf_attr`, as the kernel reads it for the batch commands.
#[repr(C)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    /// Elements to write; the kernel puts back how many it wrote.
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Writes `values[i]` at `keys[i]` of the array or hash map `map` with one syscall. Fails
/// with the kernel's error; on a partial write the elements before the failing one stay
/// written (the callers write an inactive half, which no reader sees until a later flip).
pub fn update<K: Copy, V: Copy>(
    map: BorrowedFd<'_>,
    keys: &[K],
    values: &[V],
) -> std::io::Result<()> {
    if keys.len() != values.len() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "batch update: as many keys as values",
        ));
    }
    if keys.is_empty() {
        return Ok(());
    }
    let count = u32::try_from(keys.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "batch too large"))?;
    let mut attr = BatchAttr {
        in_batch: 0,
        out_batch: 0,
        keys: keys.as_ptr() as u64,
        values: values.as_ptr() as u64,
        count,
        map_fd: map.as_raw_fd() as u32,
        elem_flags: 0,
        flags: 0,
    };
    // SAFETY: `attr` is a valid `bpf_attr` prefix of the size passed; `keys` and `values`
    // point to `count` elements of the map's key and value size, alive for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_UPDATE_BATCH,
            &raw mut attr,
            size_of::<BatchAttr>(),
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if attr.count != count {
        return Err(std::io::Error::other(format!(
            "batch update wrote {} of {count} elements",
            attr.count
        )));
    }
    Ok(())
}
