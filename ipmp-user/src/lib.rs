//! ipmp userspace: the ipmpd daemon as a library, plus what ipmpstat and ipmpadm share with it.
//!
//! Pure logic (no I/O, no clock): [`config`], [`buckets`], [`group`], [`stat`].
//! Actors, each owning one resource: [`netlink`], [`dataplane`], [`announce`], [`control`].
//! [`daemon`] wires them together.

pub mod announce;
pub mod buckets;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod dataplane;
pub mod group;
pub mod netlink;
pub mod probe;
pub mod prober;
pub mod stat;
