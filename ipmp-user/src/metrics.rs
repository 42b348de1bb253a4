//! The opt-in Prometheus endpoint (`[metrics]` in the config): an HTTP listener that renders
//! OpenMetrics text on each scrape from the control protocol's status snapshot, plus the
//! events the daemon counts between scrapes (failures, repairs, probe RTTs).
//!
//! `events.rs` holds what the daemon records, `encode.rs` turns a snapshot and those counts
//! into the exposition (pure), `server.rs` is the listener actor.

mod encode;
mod events;
mod server;

pub use encode::{CONTENT_TYPE, encode};
pub use events::{EventCounts, Events, MemberEvents, RTT_BUCKETS, RttHistogram};
pub use server::{MetricsError, MetricsServer, Refusal, Request as HttpRequest, parse_request};

#[cfg(test)]
mod tests;
