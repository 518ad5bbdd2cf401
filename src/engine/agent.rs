//! The host side of the guest agent protocol lives beside the message
//! types in `pyro_proto::client`, where benchmarks reach it too.

pub use pyro_proto::client::{call, connect, exchange};
