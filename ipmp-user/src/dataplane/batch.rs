//! `BPF_MAP_UPDATE_BATCH` and `BPF_MAP_LOOKUP_BATCH` (kernel 5.6): many elements of a map
//! written or read with one `bpf()` call. aya 0.14 has no batch operations, so this is the raw
//! syscall, for the bucket table: a failover rewrites a whole half in one call instead of one
//! call per bucket, and the writer's first look at a group reads both halves in one call.

use std::os::fd::{AsRawFd as _, BorrowedFd};

/// `enum bpf_cmd` values of `BPF_MAP_LOOKUP_BATCH` and `BPF_MAP_UPDATE_BATCH`
/// (include/uapi/linux/bpf.h).
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;

/// The `batch` member of `union bpf_attr`, as the kernel reads it for the batch commands.
#[repr(C)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    /// Elements to write or read; the kernel puts back how many it did.
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// One `bpf(cmd, attr)` call of a batch command.
///
/// # Safety
/// The pointers in `attr` (keys, values, batch tokens) must be valid for `attr.count`
/// elements of the map's key and value size for the duration of the call.
unsafe fn bpf_batch(cmd: libc::c_long, attr: &mut BatchAttr) -> std::io::Result<()> {
    // SAFETY: `attr` is a valid `bpf_attr` prefix of the size passed; the caller vouches for
    // the memory it points to.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr),
            size_of::<BatchAttr>(),
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
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
    // SAFETY: `keys` and `values` point to `count` elements of the map's key and value size,
    // alive for the call.
    unsafe { bpf_batch(BPF_MAP_UPDATE_BATCH, &mut attr) }?;
    if attr.count != count {
        return Err(std::io::Error::other(format!(
            "batch update wrote {} of {count} elements",
            attr.count
        )));
    }
    Ok(())
}

/// Reads `values.len()` consecutive elements of the array map `map` (keys `u32`) from index
/// `start` on, with one syscall. Fails with the kernel's error, or when the kernel returned
/// fewer elements or other indices than asked for.
pub fn lookup_array<V: Copy>(
    map: BorrowedFd<'_>,
    start: u32,
    values: &mut [V],
) -> std::io::Result<()> {
    if values.is_empty() {
        return Ok(());
    }
    let count = u32::try_from(values.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "batch too large"))?;
    let mut keys = vec![0u32; values.len()];
    // The batch token of an array map is the last index read (the kernel's
    // generic_map_lookup_batch continues after it), so a read from `start` passes `start - 1`;
    // from 0 it passes none. The returned keys are checked below all the same.
    let mut token = start.wrapping_sub(1);
    let mut out_token = 0u32;
    let mut attr = BatchAttr {
        in_batch: if start == 0 {
            0
        } else {
            (&raw mut token) as u64
        },
        out_batch: (&raw mut out_token) as u64,
        keys: keys.as_mut_ptr() as u64,
        values: values.as_mut_ptr() as u64,
        count,
        map_fd: map.as_raw_fd() as u32,
        elem_flags: 0,
        flags: 0,
    };
    // SAFETY: `keys` and `values` have room for `count` elements of the map's key and value
    // size, and the tokens for one key, all alive for the call.
    match unsafe { bpf_batch(BPF_MAP_LOOKUP_BATCH, &mut attr) } {
        // ENOENT: the map ended before `count` elements, which the count check reports.
        Err(err) if err.raw_os_error() != Some(libc::ENOENT) => return Err(err),
        _ => {}
    }
    if attr.count != count {
        return Err(std::io::Error::other(format!(
            "batch lookup read {} of {count} elements",
            attr.count
        )));
    }
    if let Some((i, k)) = (start..).zip(&keys).find(|(want, got)| *want != **got) {
        return Err(std::io::Error::other(format!(
            "batch lookup from index {start} returned index {k} where {i} was expected"
        )));
    }
    Ok(())
}
