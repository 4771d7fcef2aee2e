//! The batch validator must refuse or accept any bytes without panicking, and whatever it accepts
//! must parse again to the same headers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zombi::log::batch;

fuzz_target!(|data: &[u8]| {
    let records = bytes::Bytes::copy_from_slice(data);
    if let Ok(batches) = batch::validate(&records, 1 << 20) {
        for valid in batches {
            let again = batch::BatchHeader::parse(&valid.bytes).expect("accepted batches parse");
            assert_eq!(again, valid.header);
        }
    }
});
