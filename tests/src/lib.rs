//! TODO
pub mod packets;
