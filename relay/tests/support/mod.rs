//! Test support shared by the store and cluster tests.
#![allow(dead_code)]

pub(crate) mod pg;
