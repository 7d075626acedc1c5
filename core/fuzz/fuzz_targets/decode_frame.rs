//! The binary frame decoders (`PatientToRelay::decode_binary`, `RelayToPatient::decode_binary`)
//! on arbitrary bytes, kinds 1–4 (`shares`, `delivery`, `partial_sum`, `result`): never panic,
//! and whatever decodes re-encodes to exactly the same bytes (the encoding has no slack:
//! fixed-size fields, exact length), except a `result`, whose JSON part may be re-encoded
//! differently: it must decode to the same message and re-encode to a fixed point.
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
        Ok(RelayToPatient::Result(r)) => {
            // Its JSON part is not canonical (whitespace, field order, number forms) and an
            // empty partial-sum list drops its vector length, so the bytes may change; the
            // message may not, and its own encoding is a fixed point.
            let msg = RelayToPatient::Result(r);
            common::relay_round_trip(&msg);
            let once = msg.encode();
            let back = RelayToPatient::decode_wire(&once).expect("re-encoding decodes");
            assert_eq!(back.encode(), once, "re-encoding is not a fixed point");
        }
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
    let _ = RelayToPatient::decode_binary_with_limit(data, data.len() / 2);
});
