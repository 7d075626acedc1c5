//! The binary frame decoders (`PatientToRelay::decode_binary`, `RelayToPatient::decode_binary`)
//! on arbitrary bytes: never panic, and whatever decodes re-encodes to exactly the same bytes
//! (the encoding has no slack: fixed-size fields, exact length).
#![no_main]

use cohort_core::message::{PatientToRelay, RelayToPatient, Wire};
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    match PatientToRelay::decode_binary(data) {
        Ok(msg) => {
            assert!(msg.is_binary());
            assert_eq!(
                msg.encode(),
                Wire::Binary(data.to_vec()),
                "re-encoding differs"
            );
            common::patient_round_trip(&msg);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    match RelayToPatient::decode_binary(data) {
        Ok(msg) => {
            assert_eq!(
                msg.encode(),
                Wire::Binary(data.to_vec()),
                "re-encoding differs"
            );
            common::relay_round_trip(&msg);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    let _ = PatientToRelay::decode_binary_with_limit(data, data.len() / 2);
});
