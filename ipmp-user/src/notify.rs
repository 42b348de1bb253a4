//! systemd's notify protocol (sd_notify(3)) for `Type=notify`: READY=1 once the data plane is
//! in place, a STATUS= line when a group or member changes state, WATCHDOG=1 from the event
//! loop, RELOADING=1 before a reload re-executes ipmpd and STOPPING=1 on stop. Without
//! NOTIFY_SOCKET (not started by systemd) every call does nothing.
//!
//! What the messages say ([`Message`], [`status_line`]) and what the environment means
//! ([`NotifyEnv::parse`]) are pure; [`Notifier`] sends.

use std::{
    ffi::OsStr,
    fmt::Write as _,
    os::{
        linux::net::SocketAddrExt as _,
        unix::{
            ffi::OsStrExt as _,
            net::{SocketAddr, UnixDatagram},
        },
    },
    path::PathBuf,
    time::Duration,
};

use crate::group::{Group, MemberState};

/// Where systemd listens, from NOTIFY_SOCKET.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A socket file (an absolute path).
    Path(PathBuf),
    /// An abstract socket: NOTIFY_SOCKET starts with '@', which stands for the leading NUL.
    Abstract(Vec<u8>),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Path(p) => write!(f, "{}", p.display()),
            Self::Abstract(name) => write!(f, "@{}", String::from_utf8_lossy(name)),
        }
    }
}

/// The notify environment could not be used.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error(
        "NOTIFY_SOCKET={0:?} is neither an absolute path nor an abstract socket name starting \
         with '@': fix the service manager's environment or unset it"
    )]
    BadSocket(String),
    #[error(
        "WATCHDOG_USEC={0:?} is not a positive number of microseconds: set WatchdogSec= in the \
         unit, or unset WATCHDOG_USEC"
    )]
    BadWatchdogUsec(String),
    #[error("WATCHDOG_PID={0:?} is not a process id: unset it or set it to ipmpd's pid")]
    BadWatchdogPid(String),
    #[error("cannot reach the notify socket {target}: {source}")]
    Socket {
        target: Target,
        #[source]
        source: std::io::Error,
    },
}

/// What NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID ask of this process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NotifyEnv {
    /// `None`: not run under a service manager that listens.
    pub socket: Option<Target>,
    /// The watchdog timeout, when it applies to this process.
    pub watchdog: Option<Duration>,
}

impl NotifyEnv {
    /// Reads the three variables as sd_notify(3) and sd_watchdog_enabled(3) do: an empty
    /// variable counts as unset, and a WATCHDOG_PID naming another process turns the watchdog
    /// off for this one (it is meant for that process).
    pub fn parse(
        notify_socket: Option<&OsStr>,
        watchdog_usec: Option<&OsStr>,
        watchdog_pid: Option<&OsStr>,
        pid: u32,
    ) -> Result<Self, NotifyError> {
        let socket = match notify_socket.filter(|v| !v.is_empty()) {
            None => None,
            Some(v) => Some(parse_target(v)?),
        };
        let lossy = |v: &OsStr| v.to_string_lossy().into_owned();
        let for_us = match watchdog_pid.filter(|v| !v.is_empty()) {
            None => true,
            Some(v) => {
                let p: u32 = lossy(v)
                    .parse()
                    .map_err(|_| NotifyError::BadWatchdogPid(lossy(v)))?;
                p == pid
            }
        };
        let watchdog = match watchdog_usec.filter(|v| !v.is_empty()) {
            None => None,
            Some(v) => match lossy(v).parse::<u64>() {
                Ok(usec) if usec > 0 => Some(Duration::from_micros(usec)),
                _ => return Err(NotifyError::BadWatchdogUsec(lossy(v))),
            },
        };
        Ok(Self {
            watchdog: watchdog.filter(|_| for_us && socket.is_some()),
            socket,
        })
    }

    /// How often to send WATCHDOG=1: half the timeout, as sd_watchdog_enabled(3) advises, so
    /// one late tick does not trip it.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|d| d / 2)
    }
}

fn parse_target(v: &OsStr) -> Result<Target, NotifyError> {
    let bytes = v.as_bytes();
    match bytes.first() {
        Some(b'@') if bytes.len() > 1 => Ok(Target::Abstract(bytes[1..].to_vec())),
        Some(b'/') => Ok(Target::Path(PathBuf::from(v))),
        _ => Err(NotifyError::BadSocket(v.to_string_lossy().into_owned())),
    }
}

/// One notification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// Start-up (or a reload) is complete; with the first status line.
    Ready {
        status: &'a str,
    },
    Status(&'a str),
    Watchdog,
    /// About to re-execute on a new configuration; the new process sends [`Message::Ready`].
    /// (MONOTONIC_USEC= is only required by Type=notify-reload, which systemd 252 lacks.)
    Reloading,
    Stopping,
}

impl Message<'_> {
    /// The datagram's text: newline-separated VAR=VALUE assignments. A status is one line.
    pub fn text(&self) -> String {
        let status = |s: &str| format!("STATUS={}", s.replace(['\n', '\r'], " "));
        match self {
            Self::Ready { status: s } => format!("READY=1\n{}", status(s)),
            Self::Status(s) => status(s),
            Self::Watchdog => "WATCHDOG=1".into(),
            Self::Reloading => "RELOADING=1\nSTATUS=reloading".into(),
            Self::Stopping => "STOPPING=1\nSTATUS=stopping".into(),
        }
    }
}

/// The STATUS= line of the groups: `ipmp0: ok, 3/3 members usable`, or, with members down,
/// `ipmp0: degraded, 2/3 members usable; m0 failed (link down)`; groups joined by ` | `.
pub fn status_line<'a>(groups: impl IntoIterator<Item = &'a Group>) -> String {
    let mut line = String::new();
    for (i, g) in groups.into_iter().enumerate() {
        if i > 0 {
            line.push_str(" | ");
        }
        let spec = g.spec();
        let views: Vec<_> = (0..spec.members.len()).map(|m| g.member(m)).collect();
        let usable = views.iter().filter(|v| v.usable).count();
        let _ = write!(
            line,
            "{}: {}, {usable}/{} members usable",
            spec.name,
            g.state(),
            views.len()
        );
        let mut sep = "; ";
        for (m, view) in views.iter().enumerate() {
            let name = &spec.members[m].name;
            let what = match (view.state, g.fail_cause(m)) {
                (MemberState::Failed, Some(cause)) => format!("{name} failed ({cause})"),
                (MemberState::Ok, _) => continue,
                (state, _) => format!("{name} {state}"),
            };
            line.push_str(sep);
            line.push_str(&what);
            sep = ", ";
        }
    }
    if line.is_empty() {
        line.push_str("no groups");
    }
    line
}

/// Sends notifications to the service manager; does nothing when NOTIFY_SOCKET is unset.
#[derive(Debug, Default)]
pub struct Notifier {
    socket: Option<(UnixDatagram, SocketAddr, Target)>,
    env: NotifyEnv,
    /// The status last sent: [`Notifier::status`] sends only changes.
    last_status: Option<String>,
    /// A send already failed and was logged: later failures are not repeated at warn level.
    warned: bool,
}

impl Notifier {
    /// From this process's environment. A bad environment is logged and leaves the notifier
    /// silent: the daemon runs the same without a service manager.
    pub fn from_env() -> Self {
        let var = std::env::var_os;
        let parsed = NotifyEnv::parse(
            var("NOTIFY_SOCKET").as_deref(),
            var("WATCHDOG_USEC").as_deref(),
            var("WATCHDOG_PID").as_deref(),
            std::process::id(),
        );
        match parsed.and_then(Self::new) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!("systemd notification off: {e}");
                Self::default()
            }
        }
    }

    pub fn new(env: NotifyEnv) -> Result<Self, NotifyError> {
        let socket = match &env.socket {
            None => None,
            Some(target) => {
                let err = |source| NotifyError::Socket {
                    target: target.clone(),
                    source,
                };
                let addr = match target {
                    Target::Path(p) => SocketAddr::from_pathname(p).map_err(err)?,
                    Target::Abstract(name) => SocketAddr::from_abstract_name(name).map_err(err)?,
                };
                Some((UnixDatagram::unbound().map_err(err)?, addr, target.clone()))
            }
        };
        Ok(Self {
            socket,
            env,
            last_status: None,
            warned: false,
        })
    }

    /// How often the event loop sends WATCHDOG=1 (`None`: no watchdog).
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.env.watchdog_interval()
    }

    /// The loop's watchdog timer: ticks at [`Notifier::watchdog_interval`], never without one.
    pub fn watchdog_timer(&self) -> Option<tokio::time::Interval> {
        self.watchdog_interval().map(|d| {
            let mut t = tokio::time::interval(d);
            // A stalled loop must not make up for missed ticks in a burst afterwards.
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        })
    }

    pub fn ready(&mut self, status: &str) {
        self.send(Message::Ready { status });
        self.last_status = Some(status.to_owned());
    }

    /// Sends `status` when it differs from the last one sent.
    pub fn status(&mut self, status: &str) {
        if self.last_status.as_deref() != Some(status) {
            self.send(Message::Status(status));
            self.last_status = Some(status.to_owned());
        }
    }

    pub fn watchdog(&mut self) {
        self.send(Message::Watchdog);
    }

    pub fn reloading(&mut self) {
        self.send(Message::Reloading);
    }

    pub fn stopping(&mut self) {
        self.send(Message::Stopping);
    }

    fn send(&mut self, message: Message<'_>) {
        let Some((socket, addr, target)) = &self.socket else {
            return;
        };
        let text = message.text();
        if let Err(e) = socket.send_to_addr(text.as_bytes(), addr) {
            if self.warned {
                tracing::debug!("notifying {target} failed: {e}");
            } else {
                tracing::warn!("cannot notify the service manager at {target}: {e}");
                self.warned = true;
            }
        }
    }
}

/// True when stderr is the journal (JOURNAL_STREAM names its device and inode, as systemd sets
/// it for `StandardError=journal`): the journal stamps the time and has no use for colours.
pub fn stderr_is_journal() -> bool {
    let Some(var) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    nix::sys::stat::fstat(std::io::stderr())
        .is_ok_and(|st| journal_stream_is(&var.to_string_lossy(), st.st_dev, st.st_ino))
}

/// Whether JOURNAL_STREAM (`DEVICE:INODE`, decimal) names the file `dev`/`ino`: a child that
/// inherited the variable but writes elsewhere does not match.
pub fn journal_stream_is(var: &str, dev: u64, ino: u64) -> bool {
    var.split_once(':')
        .and_then(|(d, i)| Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?)))
        == Some((dev, ino))
}

/// The next tick of the loop's watchdog timer; never ready without one.
pub async fn watchdog_tick(timer: &mut Option<tokio::time::Interval>) {
    match timer {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
