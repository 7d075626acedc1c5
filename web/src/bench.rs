//! Benchmark-only exports, used by the wasm timing page (web/bench/) and nothing else.
//!
//! The timing replays one patient's round from a fixture that `cohort-bench --wasm-fixtures`
//! makes natively with core's `Patient` and `Hospital` (n − 1 simulated patients): the
//! relay's frames for one patient, whose key pair and randomness come from a fixed seed. Here
//! that patient is re-created from the same seed with [`bench_patient`], so it is the very
//! patient of the fixture and produces byte-identical frames; the page times its `handle()`
//! calls. [`BenchAgreement`] times core's key agreement alone, for the breakdown, and
//! [`BenchProof`] core's validity-proof generation alone.

use cohort_core::envelope::{KeyPair, PublicKey};
use cohort_core::field::Fe;
use cohort_core::flp::QuestionShape;
use cohort_core::proof::ProofSetup;
use cohort_core::rand_core::SeedableRng;
use cohort_core::study::StudySpec;
use rand_chacha::ChaCha20Rng;
use wasm_bindgen::prelude::*;

use crate::error::WebError;
use crate::patient::WasmPatient;

fn seed_from_hex(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut seed = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let s = core::str::from_utf8(pair).ok()?;
        seed[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(seed)
}

/// `benchPatient(nowMs, study, valueText, expectedParamsJson, seedHex)`: like `new Patient`,
/// but its keys and randomness come from a 32-byte seed (64 hex digits) instead of
/// `crypto.getRandomValues`. For benchmarks only: a seeded patient's keys are not secret.
#[wasm_bindgen(js_name = benchPatient)]
#[allow(unreachable_pub)] // exported to JavaScript, not to Rust
pub fn bench_patient(
    now_ms: f64,
    study: &str,
    value_text: String,
    expected_params_json: Option<String>,
    seed_hex: &str,
) -> Result<WasmPatient, WebError> {
    let seed = seed_from_hex(seed_hex).ok_or(WebError::Random)?;
    WasmPatient::with_seed(now_ms, study, value_text, expected_params_json, None, seed)
}

/// `new BenchAgreement(peers, seed)`: a key pair and `peers` other public keys, made up front
/// so that [`BenchAgreement::run`] times nothing but core's key agreement.
#[wasm_bindgen(js_name = BenchAgreement)]
pub struct BenchAgreement {
    me: KeyPair,
    peers: Vec<PublicKey>,
}

impl core::fmt::Debug for BenchAgreement {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "BenchAgreement({} peers)", self.peers.len())
    }
}

#[wasm_bindgen(js_class = BenchAgreement)]
impl BenchAgreement {
    /// Makes the key pair and the peers' public keys from `seed`.
    #[wasm_bindgen(constructor)]
    pub fn new(peers: u32, seed: u32) -> BenchAgreement {
        let mut rng = ChaCha20Rng::seed_from_u64(u64::from(seed));
        let me = KeyPair::generate(&mut rng);
        let peers = (0..peers)
            .map(|_| KeyPair::generate(&mut rng).public())
            .collect();
        BenchAgreement { me, peers }
    }

    /// `run()`: agrees with every peer (one X25519 and one HKDF-extract each, core's
    /// `KeyPair::agree`, as a patient does for every other roster member); returns how many
    /// agreements succeeded.
    pub fn run(&self) -> u32 {
        self.peers
            .iter()
            .filter(|k| self.me.agree(k).is_ok())
            .count() as u32
    }
}

/// `new BenchProof(studyJson, seed)`: the proof system of a study (its JSON form, as
/// `POST /api/studies` takes it) and one fixed, valid statistics vector, made up front so that
/// [`BenchProof::run`] times nothing but what a patient computes to prove its vector.
#[wasm_bindgen(js_name = BenchProof)]
pub struct BenchProof {
    setup: ProofSetup,
    stats: Vec<Fe>,
    rng: ChaCha20Rng,
}

impl core::fmt::Debug for BenchProof {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "BenchProof({} gadget calls)", self.setup.gadget_calls())
    }
}

#[wasm_bindgen(js_class = BenchProof)]
impl BenchProof {
    /// Builds the study's circuit and the statistics vector of answers in the middle of each
    /// number's range (and the first option of each choice).
    #[wasm_bindgen(constructor)]
    pub fn new(study_json: &str, seed: u32) -> Result<BenchProof, WebError> {
        let spec = StudySpec::from_json(study_json)?;
        let setup = ProofSetup::new(&spec.params).map_err(|_| WebError::Params)?;
        let answers: Vec<Option<u64>> = setup
            .layout()
            .questions()
            .iter()
            .map(|q| match q {
                QuestionShape::Number { range, .. } => Some(range / 2),
                QuestionShape::Choice { .. } => Some(0),
            })
            .collect();
        let stats = setup
            .layout()
            .statistics(&answers)
            .map_err(|_| WebError::Params)?;
        Ok(BenchProof {
            setup,
            stats,
            rng: ChaCha20Rng::seed_from_u64(u64::from(seed)),
        })
    }

    /// M, the circuit's gadget calls.
    #[wasm_bindgen(getter, js_name = gadgetCalls)]
    pub fn gadget_calls(&self) -> u32 {
        self.setup.gadget_calls() as u32
    }

    /// `run()`: the witness and the proof of the vector (core's `ProofSetup::prove`, as a
    /// patient does once per round before dealing its shares); returns the proven vector's
    /// length (statistics, witness and proof).
    pub fn run(&mut self) -> u32 {
        self.setup.prove(&self.stats, &mut self.rng).len() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_parse_and_agreements_run() {
        assert_eq!(seed_from_hex(&"0a".repeat(32)), Some([10u8; 32]));
        assert_eq!(seed_from_hex("0a"), None);
        assert_eq!(seed_from_hex(&"zz".repeat(32)), None);
        assert_eq!(BenchAgreement::new(5, 1).run(), 5);
        let study = r#"{"id":"b","size":3,"min":0,"max":300,"decimals":1,"buckets":10}"#;
        let mut p = BenchProof::new(study, 1).unwrap();
        assert_eq!(p.gadget_calls(), 47);
        assert_eq!(p.run(), 13 + 36 + 2 * 47 + 3);
    }
}
