//! `RelayToPatient::decode` on arbitrary input: never panics, and whatever decodes re-encodes
//! to a message that decodes to the same value.
#![no_main]

use cohort_core::message::RelayToPatient;
use libfuzzer_sys::fuzz_target;

mod common;

fn check(text: &str) {
    match RelayToPatient::decode(text) {
        Ok(msg) => {
            common::relay_round_trip(&msg);
            let _ = msg.kind();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    let _ = RelayToPatient::decode_with_limit(text, text.len() / 2);
}

fuzz_target!(|data: &[u8]| {
    match std::str::from_utf8(data) {
        Ok(text) => check(text),
        Err(_) => check(&String::from_utf8_lossy(data)),
    }
});
