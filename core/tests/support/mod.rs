//! Code shared by the integration tests (native and wasm32). The simulated network is
//! `cohort_core::testing` (feature `test-util`).
#![allow(dead_code)]

pub(crate) mod flp_vectors;
pub(crate) mod vectors;
