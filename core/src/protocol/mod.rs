//! The Kafka wire protocol over TCP: framing, request decoding, the connection loop and
//! the listener. Message structs come from the `kafka-protocol` crate; what a request
//! means is the broker's business ([`crate::broker`]).
//!
//! ```text
//!  TcpListener ── accept (bounded by max.connections) ──> connection task
//!     connection: read frame (size checked before allocating) -> decode header + body
//!                 -> Broker::handle (appends happen here, in request order)
//!                 -> queue of pending responses (bounded) -> writer: await each in order
//!                 -> encode (record sets by reference) -> write
//! ```

mod connection;
mod encode_buf;
mod frame;
mod request;
mod server;

pub use encode_buf::EncodeBuf;
pub use frame::{FrameError, read_frame};
pub use request::{RequestError, decode_request};
pub use server::{Server, ServerHandle};
