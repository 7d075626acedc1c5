//! Code shared by the integration tests (native and wasm32).
#![allow(dead_code)]

pub(crate) mod flp_vectors;
pub(crate) mod sim;
pub(crate) mod vectors;
