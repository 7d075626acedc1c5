//! cohort-core: the share math and the whole protocol of cohort.
//!
//! cohort computes count, sum, mean, standard deviation and a histogram of a sensitive value
//! over a group of patients so that nobody — the hospital included — learns any one patient's
//! value. This crate is sans-IO and `no_std` + `alloc`: the browser (wasm), the native patient
//! and the relay all drive the same [`protocol::Patient`] and [`protocol::Hospital`] machines.
//!
//! Modules, one concept each: [`field`] (GF(2^61 − 1)), [`decimal`] (exact user input),
//! [`study`] (parameters and their checks), [`encoding`] (the statistics vector), [`sharing`]
//! (additive and Shamir), [`envelope`] (X25519 + HKDF + ChaCha20-Poly1305), [`roster`] (roster
//! and safety code), [`message`] (wire types), [`frame`] (binary frames of the bulk messages),
//! [`protocol`] (state machines), [`error`]. With the `test-util` feature, `testing` holds the
//! simulated network used by tests and benchmarks.
//! Questionnaires: [`question`] (numbers and choices), [`layout`] (their vector), [`answer`]
//! (one patient's answers and their vector), [`questionnaire`] (the decoded result).

#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod answer;
pub mod b64;
pub mod commitment;
pub mod decimal;
pub mod encoding;
pub mod envelope;
pub mod error;
pub mod field;
pub mod flp;
pub mod frame;
pub mod layout;
pub mod message;
pub mod proof;
pub mod protocol;
pub mod question;
pub mod questionnaire;
pub mod roster;
pub mod sharing;
pub mod study;
pub mod summary;
#[cfg(feature = "test-util")]
pub mod testing;

pub use rand_core;
