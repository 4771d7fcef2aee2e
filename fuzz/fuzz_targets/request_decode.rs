//! Any frame body must decode to a request or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = zombi::protocol::decode(bytes::Bytes::copy_from_slice(data));
});
