//! The deletion queue (in progress). See `messages` for what it exchanges with the
//! upload queues.

pub mod messages;
pub use messages::*;
