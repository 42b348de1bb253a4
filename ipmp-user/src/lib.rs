//! ipmp userspace: the ipmpd daemon as a library, plus what ipmpstat and ipmpadm share with it.
//!
//! Pure logic (no I/O, no clock): [`config`], [`buckets`], [`group`], [`mpathd`] (in.mpathd's
//! probing algorithm), [`stat`].
//! Actors, each owning one resource: [`netlink`], [`dataplane`], [`probe_io`] (the probe
//! sockets and the reply ring), [`announce`], [`control`].
//! [`daemon`] wires them together; [`notify`] tells systemd how it is; [`cli`] holds the
//! tools' command lines and renders their man pages and completions.

pub mod announce;
pub mod buckets;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod dataplane;
pub mod group;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod mpathd;
pub mod netlink;
pub mod notify;
pub mod probe_io;
pub mod stat;
