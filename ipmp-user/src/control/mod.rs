//! The control protocol between ipmpd and its tools (ipmpstat, ipmpadm).
//!
//! Transport: a unix stream socket ([`DEFAULT_SOCKET`]). Framing: newline-delimited JSON, at most
//! [`MAX_REQUEST_LINE`] bytes per request and [`MAX_RESPONSE_LINE`] per response. A client writes one [`Request`] line and reads one [`Response`]
//! line; a connection may carry several requests in turn. [`Request::Probes`] (for `ipmpstat -p`)
//! turns the connection into a stream: one [`Response::Probe`] line per completed probe until
//! the client or ipmpd closes it, so a client reads responses line by line and never assumes
//! the connection ends after one.
//!
//! Queries are open to every local user (the socket is mode 0666); requests that change state
//! ([`Request::is_mutating`]) are refused by the server unless the peer's uid (SO_PEERCRED) is 0.

mod client;
mod protocol;
mod server;

pub use client::{ProbeStream, request, request_blocking, status_blocking, subscribe_probes};
pub use protocol::*;
pub use server::{ControlCall, ControlServer, PeerCred, authorize};

#[cfg(test)]
mod tests;
