//! Fixtures for the wasm patient timing (web/bench/): one whole round of n patients simulated
//! natively with core's `Patient` and `Hospital` on core's simulated network
//! (`cohort_core::testing`, no sockets), recording every frame the relay
//! sends to patient 1 and every frame patient 1 sends. Patient 1's keys and randomness come
//! from a fixed seed, so the browser can re-create exactly that patient (`benchPatient`) and
//! replay its side of the round; its frames must come out byte for byte the same.
//!
//! One fixture per size and proof setting: `round-<n>.json` (validity proofs on, the study
//! default: the patient also sends `verify` and, as a checker, a `verdict`) and
//! `round-<n>-noproofs.json` (`proofs` off).

use std::path::Path;

use cohort_core::decimal::Decimal;
use cohort_core::message::{RelayToPatient, Wire};
use cohort_core::protocol::{Hospital, Patient};
use cohort_core::study::{StudyParams, StudySpec};
use cohort_core::testing::{Behaviour, Dir, Network, Record};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde_json::json;

use crate::patients::value_of;

/// The measured patient's seed (public: a benchmark patient has no secrets).
pub const SEED: [u8; 32] = *b"cohort-bench wasm patient seed!!";

/// The measured patient's value.
pub const VALUE: &str = "172.5";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The fixture's file name for `n` patients with proofs on or off.
pub fn file_name(n: usize, proofs: bool) -> String {
    if proofs {
        format!("round-{n}.json")
    } else {
        format!("round-{n}-noproofs.json")
    }
}

/// Simulates one round of `n` patients (validity proofs on or off); returns the fixture JSON.
pub fn round(n: usize, proofs: bool) -> Result<String, String> {
    let mut params = StudyParams::demo();
    params.id = format!("wasm{n}");
    params.size = n as u32;
    params.threshold = n as u32;
    params.min_cohort = 3;
    params.proofs = proofs;
    let spec = StudySpec {
        params: params.clone(),
        deadlines: Default::default(),
        invite: None,
    };
    let hospital = Hospital::new(spec, 1).map_err(|e| e.to_string())?;
    let value: Decimal = VALUE.parse().map_err(|e| format!("{e}"))?;
    let mut patients = Vec::with_capacity(n);
    patients.push(
        Patient::new(
            0,
            &params.id,
            value,
            Some(params.clone()),
            None,
            &mut ChaCha20Rng::from_seed(SEED),
        )
        .map_err(|e| e.to_string())?,
    );
    for i in 1..n {
        let mut rng = ChaCha20Rng::seed_from_u64(i as u64);
        patients.push(
            Patient::new(0, &params.id, value_of(i).0, None, None, &mut rng)
                .map_err(|e| e.to_string())?,
        );
    }
    // Core's simulated network, keeping only patient 0's frames.
    let mut net =
        Network::new(hospital, patients, vec![Behaviour::Honest; n]).record(Record::Peer(0));
    net.run_with(deliver_in_parallel);
    let mut to_relay: Vec<serde_json::Value> = Vec::new();
    let mut to_patient: Vec<Wire> = Vec::new();
    for f in net.frames {
        match f.dir {
            Dir::Up => to_relay.push(wire_json(&f.wire)),
            Dir::Down => to_patient.push(f.wire),
        }
    }
    let kinds: Vec<String> = to_patient
        .iter()
        .map(|t| {
            RelayToPatient::decode_wire(t)
                .map(|m| m.kind().to_lowercase())
                .unwrap_or_default()
        })
        .collect();
    if kinds.last().map(String::as_str) != Some("result") {
        return Err(format!("the simulated round did not complete: {kinds:?}"));
    }
    let frames: Vec<_> = kinds
        .iter()
        .zip(&to_patient)
        .map(|(k, t)| {
            let mut f = wire_json(t);
            f["kind"] = json!(k);
            f
        })
        .collect();
    let fixture = json!({
        "patients": n,
        "proofs": proofs,
        "study": params.id,
        "params": params,
        "value": VALUE,
        "seed": hex(&SEED),
        "from_relay": frames,
        "to_relay": to_relay,
    });
    Ok(fixture.to_string())
}

/// A frame as JSON: `{"text": …}` for a text message, `{"hex": …}` for a binary one.
fn wire_json(w: &Wire) -> serde_json::Value {
    match w {
        Wire::Text(t) => json!({ "text": t }),
        Wire::Binary(b) => json!({ "hex": hex(b) }),
    }
}

/// Hands every patient its inbox, spread over the cores: the other patients' key agreements
/// dominate a large round.
fn deliver_in_parallel(net: &mut Network<Patient>) {
    let now = net.now_ms;
    let n = net.patients.len();
    let threads = std::thread::available_parallelism().map_or(2, |t| t.get());
    let chunk = n.div_ceil(threads).max(1);
    let refused = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for (ps, msgs) in net
            .patients
            .chunks_mut(chunk)
            .zip(net.inbox.chunks_mut(chunk))
        {
            let refused = &refused;
            s.spawn(move || {
                for (p, msgs) in ps.iter_mut().zip(msgs.iter_mut()) {
                    for m in msgs.drain(..) {
                        if p.handle(now, m).is_err() {
                            refused.store(true, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                }
            });
        }
    });
    assert!(
        !refused.into_inner(),
        "a simulated patient refused a hospital message"
    );
}

/// Writes the fixture of each n (and each proof setting in `proofs`) into `dir`
/// ([`file_name`]).
pub fn write_all(dir: &Path, sizes: &[usize], proofs: &[bool], quiet: bool) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (&n, &on) in sizes
        .iter()
        .flat_map(|n| proofs.iter().map(move |p| (n, p)))
    {
        if n < 3 {
            return Err("at least 3 patients".into());
        }
        let t0 = std::time::Instant::now();
        let text = round(n, on)?;
        let path = dir.join(file_name(n, on));
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        if !quiet {
            eprintln!(
                "wrote {} ({:.1} s)",
                path.display(),
                t0.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_round_with_proofs_replays_to_a_result() {
        let v: serde_json::Value = serde_json::from_str(&round(4, true).unwrap()).unwrap();
        assert_eq!(v["proofs"], true);
        let kinds: Vec<&str> = v["from_relay"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "welcome", "roster", "keys", "delivery", "checks", "verdicts", "result"
            ]
        );
        let sent = v["to_relay"].as_array().unwrap();
        assert_eq!(
            sent.len(),
            6,
            "join, reveal, shares, verify, verdict, partial sum"
        );
        // Binary frames: magic "CO", version 3, kinds 1 (shares), 5 (verify), 7 (verdict),
        // 3 (partial sum).
        for (i, kind) in [(2, "01"), (3, "05"), (4, "07"), (5, "03")] {
            let hex = sent[i]["hex"].as_str().unwrap();
            assert!(
                hex.starts_with(&format!("434f03{kind}")),
                "{i}: {}",
                &hex[..8]
            );
        }
        assert_eq!(
            round(4, true).unwrap(),
            round(4, true).unwrap(),
            "deterministic"
        );
    }

    #[test]
    fn a_small_round_replays_to_a_result() {
        let v: serde_json::Value = serde_json::from_str(&round(4, false).unwrap()).unwrap();
        assert_eq!(v["proofs"], false);
        let kinds: Vec<&str> = v["from_relay"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["welcome", "roster", "keys", "delivery", "result"]);
        let sent = v["to_relay"].as_array().unwrap();
        assert_eq!(sent.len(), 4, "join, reveal, shares, partial sum");
        assert!(
            sent[0]["text"]
                .as_str()
                .unwrap()
                .starts_with(r#"{"type":"join""#)
        );
        assert!(
            sent[1]["text"]
                .as_str()
                .unwrap()
                .starts_with(r#"{"type":"reveal""#)
        );
        // Binary frames: magic "CO", version 3, kind 1 (shares) and 3 (partial sum).
        assert!(sent[2]["hex"].as_str().unwrap().starts_with("434f0301"));
        assert!(sent[3]["hex"].as_str().unwrap().starts_with("434f0303"));
        assert_eq!(
            round(4, false).unwrap(),
            round(4, false).unwrap(),
            "deterministic"
        );
    }
}
