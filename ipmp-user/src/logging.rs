//! ipmpd's log output: tracing lines to stderr through a writer thread, so the event loop
//! never waits on its log. A stderr that blocks — journald throttled or stalled, a pipe nobody
//! reads, a file on a disk that the kernel is throttling for writeback — would otherwise stop
//! failover, probing and the control socket with it (the runtime has one thread). When the
//! writer falls [`BUFFERED_LINES`] behind, new lines are dropped and counted
//! (`ipmp_log_lines_dropped_total`), as a line is worth less than a failover.

use std::{io::IsTerminal as _, sync::OnceLock};

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};

/// Lines the writer thread may fall behind before lines are dropped: a flap storm's worth.
pub const BUFFERED_LINES: usize = 16_384;

static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Installs the global subscriber (RUST_LOG, default `info`). Keep the guard while logging:
/// dropping it writes out what is still queued (before exit or exec).
pub fn init() -> WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::stderr().is_terminal();
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(BUFFERED_LINES)
        .thread_name("ipmpd-log")
        .finish(std::io::stderr());
    let _ = DROPPED.set(writer.error_counter());
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi);
    // Under systemd the journal adds the time itself.
    if crate::notify::stderr_is_journal() {
        fmt.without_time().init();
    } else {
        fmt.init();
    }
    guard
}

/// Log lines dropped since start because stderr did not keep up (0 before [`init`]).
pub fn dropped_lines() -> u64 {
    DROPPED.get().map_or(0, |c| c.dropped_lines() as u64)
}
