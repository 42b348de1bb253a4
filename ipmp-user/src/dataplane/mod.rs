//! The data plane: loading, attaching and pinning the eBPF programs ([`loader`]), and the
//! dataplane writer ([`writer`]), the only code that touches the maps.

mod batch;
pub mod loader;
mod query;
mod state;
pub mod writer;

pub use loader::{Dataplane, XdpAttachMode};
pub use state::*;
