//! The Kafka wire protocol over TCP: framing, request decoding, the connection loop and
//! the listener. Message structs come from the `kafka-protocol` crate; what a request
//! means is the broker's business ([`crate::broker`]).
//!
//! ```text
//!  TcpListener ── accept (bounded by max.connections) ──> connection task
//!     connection: read frame (size checked before allocating) -> decode header + body
//!                 -> Broker::handle -> encode response -> write; one request at a time,
//!                 so responses leave in request order (Kafka mutes a connection the same way)
//! ```

mod connection;
mod frame;
mod request;
mod server;

pub use frame::{FrameError, read_frame};
pub use request::{RequestError, decode_request};
pub use server::{Server, ServerHandle};
