//! cohort-relay: the hospital side of cohort and the native patient.
//!
//! The `cohort-relay` binary serves HTTPS (static pages, the `/api`) and WSS (`/ws` for
//! patients, `/ws/dashboard` for the hospital) on one TLS 1.3 port. It is a thin driver: every
//! protocol decision is made by cohort-core's [`Hospital`](cohort_core::protocol::Hospital),
//! one per study, running in its own task ([`registry`]). The relay owns the sockets, TLS,
//! the clock, timers, SQLite ([`store`]) and HTTP. It never sees a value or a share in clear,
//! and never logs or stores sealed shares, partial sums or keys.
//!
//! The `cohort-patient` binary is a native patient: [`client`] drives cohort-core's
//! [`Patient`](cohort_core::protocol::Patient) over WSS, verifying the relay's certificate
//! against a given CA.
//!
//! The HTTP, WebSocket and CLI contract is docs/API.md.

pub mod api;
pub mod bundle;
pub mod certs;
pub mod client;
pub mod clock;
pub mod cluster;
#[cfg(feature = "test-util")]
pub mod harness;
pub mod http;
pub mod logging;
#[cfg(feature = "test-util")]
pub mod pg_cluster;
pub mod registry;
pub mod server;
pub mod store;
mod study;
pub mod tls;
pub mod token;
pub mod views;
pub mod ws;

pub use server::{Relay, RelayConfig, StartError};
