//! cohort-web: the browser patient, a thin wasm-bindgen layer over cohort-core.
//!
//! The page's JavaScript owns the WebSocket, the clock and the DOM; every byte of protocol is
//! made and checked here by core's sans-IO [`cohort_core::protocol::Patient`]. A patient's value
//! enters through [`Patient::new`](WasmPatient::new) and never comes back out: what leaves is
//! the `join` (a public key), sealed shares and a partial sum, all produced by the core.
//!
//! The JavaScript interface (camelCase):
//!
//! ```js
//! import init, { Patient, checkValue, checkAnswer, checkAnswers, bucketEdges } from './pkg/cohort_web.js';
//! await init();
//! const hint = checkValue(JSON.stringify(params), text); // undefined, or why the value is refused
//! const p = new Patient(Date.now(), params.id, text, JSON.stringify(params), undefined);
//! // A questionnaire: one answer per question id (text as typed, an option's label, or null
//! // for "prefer not to say"); checkAnswer(paramsJson, id, text) checks one field.
//! const q = Patient.withAnswers(Date.now(), params.id, JSON.stringify({height: "172.5",
//!   smoker: "no", alcohol: null}), JSON.stringify(params), undefined);
//! ws.onopen = () => { for (let m; (m = p.pollOutput()) !== undefined;) ws.send(m); };
//! ws.onmessage = (e) => {
//!   // ws.binaryType = 'arraybuffer': the delivery is a binary frame; pollOutput() gives a
//!   // string (text) or a Uint8Array (binary) to pass to ws.send as is.
//!   try {
//!     if (typeof e.data === 'string') p.handle(Date.now(), e.data);
//!     else p.handleBinary(Date.now(), new Uint8Array(e.data));
//!   } catch (err) { /* err.name, err.message */ }
//!   for (let m; (m = p.pollOutput()) !== undefined;) ws.send(m);
//!   for (let ev; (ev = p.pollEvent()) !== undefined;) show(ev); // ev.kind: "welcomed", …
//! };
//! ```
//!
//! Errors reach JavaScript as `Error` objects whose `name` is the Rust error type (see
//! [`WebError`]) and whose message is core's explanation, which never quotes a value.

mod answers;
#[cfg(feature = "bench")]
mod bench;
mod error;
mod event;
mod patient;
mod study;

pub use answers::{check_answer, check_answers, check_study_json, parse_answers, question_of};
pub use error::WebError;
pub use event::event_json;
pub use patient::WasmPatient;
pub use study::{bucket_edges, check_study_spec, check_value, parse_params, protocol_version};
