//! Any bytes as a request frame, through the broker's decoder with its real list of
//! supported versions: an error is fine, a panic is not.
#![no_main]

use bytes::Bytes;
use headwater_core::broker::supports;
use headwater_core::protocol::decode_request;
use libfuzzer_sys::fuzz_target;

// As in the broker: huge reservations by the codec map address space only.
#[global_allocator]
static ALLOCATOR: headwater_core::alloc::GuardedAllocator = headwater_core::alloc::GuardedAllocator;

fuzz_target!(|data: &[u8]| {
    let _ = decode_request(Bytes::copy_from_slice(data), supports);
});
