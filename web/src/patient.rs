//! `Patient`: core's patient machine for one round, driven from JavaScript.

use cohort_core::message::{RelayToPatient, Wire};
use cohort_core::protocol::Patient;
use cohort_core::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use wasm_bindgen::prelude::*;
use zeroize::Zeroize;

use cohort_core::answer::Answers;

use crate::answers::parse_answers;
use crate::error::WebError;
use crate::event::event_json;
use crate::study::{parse_params, parse_value};

/// Milliseconds from JavaScript (`Date.now()`) as core's clock; NaN and negatives become 0.
fn ms(now_ms: f64) -> u64 {
    now_ms.max(0.0) as u64
}

/// One patient in one round (JS class `Patient`): a newtype over core's
/// [`cohort_core::protocol::Patient`]. It holds the value; nothing reads it back out.
/// `Debug` shows the study and state only, and the JS object has no fields.
#[wasm_bindgen(js_name = Patient)]
pub struct WasmPatient(Patient);

impl core::fmt::Debug for WasmPatient {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("WasmPatient").field(&self.0).finish()
    }
}

impl WasmPatient {
    /// Like the JS constructor, with the random seed given (for tests and native callers).
    pub fn with_seed(
        now_ms: f64,
        study: &str,
        mut value_text: String,
        expected_params_json: Option<String>,
        invite: Option<String>,
        mut seed: [u8; 32],
    ) -> Result<WasmPatient, WebError> {
        let mut rng = ChaCha20Rng::from_seed(seed);
        seed.zeroize();
        let started = (|| {
            let expected = expected_params_json
                .as_deref()
                .map(parse_params)
                .transpose()?;
            let value = parse_value(expected.as_ref(), &value_text)?;
            Ok(Patient::new(
                ms(now_ms),
                study,
                value,
                expected,
                invite,
                &mut rng,
            )?)
        })();
        value_text.zeroize();
        started.map(WasmPatient)
    }

    /// Like `Patient.withAnswers`, with the random seed given (for tests and native callers).
    pub fn with_answers_and_seed(
        now_ms: f64,
        study: &str,
        answers: Answers,
        expected_params_json: Option<String>,
        invite: Option<String>,
        mut seed: [u8; 32],
    ) -> Result<WasmPatient, WebError> {
        let mut rng = ChaCha20Rng::from_seed(seed);
        seed.zeroize();
        let expected = expected_params_json
            .as_deref()
            .map(parse_params)
            .transpose()?;
        Ok(WasmPatient(Patient::with_answers(
            ms(now_ms),
            study,
            answers,
            expected,
            invite,
            &mut rng,
        )?))
    }

    /// The next event as JSON (see [`event_json`]).
    pub fn poll_event_json(&mut self) -> Option<serde_json::Value> {
        self.0.poll_event().map(|ev| event_json(&ev))
    }
}

#[wasm_bindgen(js_class = Patient)]
impl WasmPatient {
    /// `new Patient(nowMs, study, valueText, expectedParamsJson?, invite?)`: a patient that will
    /// join `study` with the value typed as `valueText`. With `expectedParamsJson` (the
    /// `params` of the study the person chose), the value is checked now and the relay must
    /// present exactly these parameters. Draws fresh keys from `crypto.getRandomValues`.
    /// Queues the `join` message. Throws `ValueError`, `ParamsError`, `StudyError`,
    /// `RandomError`.
    #[wasm_bindgen(constructor)]
    pub fn new(
        now_ms: f64,
        study: &str,
        value_text: String,
        expected_params_json: Option<String>,
        invite: Option<String>,
    ) -> Result<WasmPatient, WebError> {
        let mut seed = [0u8; 32];
        if getrandom::fill(&mut seed).is_err() {
            let mut value_text = value_text;
            value_text.zeroize();
            return Err(WebError::Random);
        }
        WasmPatient::with_seed(
            now_ms,
            study,
            value_text,
            expected_params_json,
            invite,
            seed,
        )
    }

    /// `Patient.withAnswers(nowMs, study, answersJson, expectedParamsJson?, invite?)`: a
    /// patient that will join a questionnaire study with `answersJson`, one JSON object of
    /// question id to the text typed (a number) or the option's label, `null` for "prefer not
    /// to say" (core's `Answers`). With `expectedParamsJson` every answer is checked now;
    /// otherwise against the relay's parameters before anything is shared. Throws
    /// `AnswersError` (not such an object), `ProtocolError` (an answer refused: the message
    /// names the question, never the answer), `ParamsError`, `StudyError`, `RandomError`.
    #[wasm_bindgen(js_name = withAnswers)]
    pub fn with_answers(
        now_ms: f64,
        study: &str,
        answers_json: String,
        expected_params_json: Option<String>,
        invite: Option<String>,
    ) -> Result<WasmPatient, WebError> {
        let answers = parse_answers(answers_json)?;
        let mut seed = [0u8; 32];
        if getrandom::fill(&mut seed).is_err() {
            return Err(WebError::Random);
        }
        WasmPatient::with_answers_and_seed(
            now_ms,
            study,
            answers,
            expected_params_json,
            invite,
            seed,
        )
    }

    /// `handle(nowMs, frameText)`: one text message from the relay. Throws `DecodeError` for a
    /// malformed frame and `ProtocolError` for a message the machine cannot accept; after a
    /// throw as after a return, drain `pollOutput()` and `pollEvent()` (a refusal queues a
    /// `leave` and a `refused` event).
    pub fn handle(&mut self, now_ms: f64, frame: &str) -> Result<(), WebError> {
        let msg = RelayToPatient::decode(frame)?;
        self.0.handle(ms(now_ms), msg)?;
        Ok(())
    }

    /// `handleBinary(nowMs, bytes)`: one binary message from the relay (a `Uint8Array`; set the
    /// WebSocket's `binaryType` to `"arraybuffer"`). Throws as `handle` does.
    #[wasm_bindgen(js_name = handleBinary)]
    pub fn handle_binary(&mut self, now_ms: f64, frame: &[u8]) -> Result<(), WebError> {
        let msg = RelayToPatient::decode_binary(frame)?;
        self.0.handle(ms(now_ms), msg)?;
        Ok(())
    }

    /// `pollOutput()`: the next message to send to the relay: a string (send as text), a
    /// `Uint8Array` (send as binary) or `undefined`.
    #[wasm_bindgen(js_name = pollOutput)]
    pub fn poll_output(&mut self) -> JsValue {
        match self.poll_wire() {
            Some(Wire::Text(t)) => JsValue::from_str(&t),
            Some(Wire::Binary(b)) => js_sys::Uint8Array::from(b.as_slice()).into(),
            None => JsValue::UNDEFINED,
        }
    }

    /// `pollEvent()`: the next event for the page as a plain object `{kind, …}` (see
    /// [`event_json`]), or `undefined`.
    #[wasm_bindgen(js_name = pollEvent)]
    pub fn poll_event(&mut self) -> Option<JsValue> {
        let json = self.poll_event_json()?.to_string();
        js_sys::JSON::parse(&json).ok()
    }

    /// `rememberRounds(json)`: rounds this person's device already took part in for the study
    /// (the text of an earlier `seenRoundsJson()`, kept in `sessionStorage` across reconnects).
    /// The core refuses a replayed round id or a second partial-sum request in one of them.
    /// Text that does not parse is ignored.
    #[wasm_bindgen(js_name = rememberRounds)]
    pub fn remember_rounds(&mut self, json: &str) {
        if let Some(seen) = cohort_core::protocol::SeenRounds::from_json(json) {
            self.0.remember_rounds(&seen);
        }
    }

    /// `seenRoundsJson()`: the rounds seen so far, as JSON to keep in `sessionStorage`.
    #[wasm_bindgen(js_name = seenRoundsJson)]
    pub fn seen_rounds_json(&self) -> String {
        self.0.seen_rounds().to_json()
    }

    /// `pollTimeout()`: when (ms, same clock as `nowMs`) to call `handleTimeout`, or `undefined`.
    #[wasm_bindgen(js_name = pollTimeout)]
    pub fn poll_timeout(&self) -> Option<f64> {
        self.0.poll_timeout().map(|t| t as f64)
    }

    /// `handleTimeout(nowMs)`: gives up (a `refused` event and a `leave`) if the deadline passed.
    #[wasm_bindgen(js_name = handleTimeout)]
    pub fn handle_timeout(&mut self, now_ms: f64) {
        self.0.handle_timeout(ms(now_ms));
    }

    /// `setTimeout(nowMs, ms?)`: give up when the relay is silent for `ms` during a round
    /// (enrolment is never timed out); `undefined` waits forever, the default.
    #[wasm_bindgen(js_name = setTimeout)]
    pub fn set_timeout(&mut self, now_ms: f64, timeout_ms: Option<f64>) {
        self.0.set_timeout(ms(now_ms), timeout_ms.map(ms));
    }

    /// `leave()`: queues `leave` and ends the round for this patient.
    pub fn leave(&mut self) {
        self.0.leave();
    }

    /// `stateName`: what the machine waits for, e.g. `"awaiting roster"`.
    #[wasm_bindgen(getter, js_name = stateName)]
    pub fn state_name(&self) -> String {
        self.0.state_name().into()
    }

    /// `isFinished`: whether the round is over for this patient.
    #[wasm_bindgen(getter, js_name = isFinished)]
    pub fn is_finished(&self) -> bool {
        self.0.is_finished()
    }

    /// `toString()`: the study and state, never the value.
    #[wasm_bindgen(js_name = toString)]
    pub fn to_js_string(&self) -> String {
        format!("{self:?}")
    }
}

/// The Rust side of the JS methods, for Rust drivers and tests (not exported to JS).
impl WasmPatient {
    /// The next encoded message for the relay (what `pollOutput` hands to JS).
    pub fn poll_wire(&mut self) -> Option<Wire> {
        self.0.poll_output().map(|m| m.encode())
    }

    /// One message from the relay, text or binary (what `handle` / `handleBinary` take).
    pub fn handle_wire(&mut self, now_ms: f64, wire: &Wire) -> Result<(), WebError> {
        match wire {
            Wire::Text(t) => self.handle(now_ms, t),
            Wire::Binary(b) => self.handle_binary(now_ms, b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cohort_core::error::ValueError;
    use cohort_core::study::StudyParams;

    #[test]
    fn debug_never_shows_the_value() {
        let params = serde_json::to_string(&StudyParams::demo()).unwrap();
        let mut p = WasmPatient::with_seed(
            0.0,
            "demo",
            "172.5".into(),
            Some(params.clone()),
            None,
            [7; 32],
        )
        .unwrap();
        let shown = format!("{p:?} {}", p.to_js_string());
        assert!(!shown.contains("172"), "{shown}");
        assert!(shown.contains("awaiting welcome"), "{shown}");
        let Some(Wire::Text(join)) = p.poll_wire() else {
            panic!("join is a text message")
        };
        assert!(
            join.starts_with(r#"{"type":"join","v":3,"study":"demo""#),
            "{join}"
        );
        assert!(!join.contains("172"), "{join}");
        assert!(p.poll_wire().is_none());
        let err = WasmPatient::with_seed(0.0, "demo", "301".into(), Some(params), None, [7; 32])
            .unwrap_err();
        assert_eq!(err, WebError::Value(ValueError::OutOfRange));
    }
}
