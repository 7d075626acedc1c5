//! Fixtures for the wasm patient timing (web/bench/): one whole round of n patients simulated
//! natively with core's `Patient` and `Hospital` (no sockets), recording every frame the relay
//! sends to patient 1 and every frame patient 1 sends. Patient 1's keys and randomness come
//! from a fixed seed, so the browser can re-create exactly that patient (`benchPatient`) and
//! replay its side of the round; its frames must come out byte for byte the same.

use std::path::Path;

use cohort_core::decimal::Decimal;
use cohort_core::message::RelayToPatient;
use cohort_core::protocol::{Hospital, HospitalOutput, Patient, PeerId};
use cohort_core::study::{StudyParams, StudySpec};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde_json::json;

use super::patients::value_of;

/// The measured patient's seed (public: a benchmark patient has no secrets).
pub(crate) const SEED: [u8; 32] = *b"cohort-bench wasm patient seed!!";

/// The measured patient's value.
pub(crate) const VALUE: &str = "172.5";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Simulates one round of `n` patients; returns the fixture JSON.
pub(crate) fn round(n: usize) -> Result<String, String> {
    let mut params = StudyParams::demo();
    params.id = format!("wasm{n}");
    params.size = n as u32;
    params.threshold = n as u32;
    params.min_cohort = 3;
    let spec = StudySpec {
        params: params.clone(),
        deadlines: Default::default(),
        invite: None,
    };
    let mut hospital = Hospital::new(spec, 1).map_err(|e| e.to_string())?;
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
    let mut to_relay: Vec<String> = Vec::new();
    let mut to_patient: Vec<String> = Vec::new();
    loop {
        let mut moved = false;
        for (i, p) in patients.iter_mut().enumerate() {
            while let Some(m) = p.poll_output() {
                let text = m.encode();
                if i == 0 {
                    to_relay.push(text);
                }
                hospital
                    .handle(0, PeerId(i as u64), m)
                    .map_err(|e| format!("hospital refused patient {i}: {e}"))?;
                moved = true;
            }
        }
        let mut inbox: Vec<Vec<RelayToPatient>> = (0..n).map(|_| Vec::new()).collect();
        while let Some(out) = hospital.poll_output() {
            if let HospitalOutput::Send { to, msg } = out {
                if to.0 == 0 {
                    to_patient.push(msg.encode());
                }
                inbox[to.0 as usize].push(msg);
                moved = true;
            }
        }
        if !moved {
            break;
        }
        // The other patients' key agreements dominate: spread them over the cores.
        let threads = std::thread::available_parallelism().map_or(2, |t| t.get());
        let chunk = n.div_ceil(threads);
        std::thread::scope(|s| {
            for (ps, msgs) in patients.chunks_mut(chunk).zip(inbox.chunks_mut(chunk)) {
                s.spawn(move || {
                    for (p, msgs) in ps.iter_mut().zip(msgs.iter_mut()) {
                        for m in msgs.drain(..) {
                            let _ = p.handle(0, m);
                        }
                    }
                });
            }
        });
    }
    let kinds: Vec<String> = to_patient
        .iter()
        .map(|t| {
            RelayToPatient::decode(t)
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
        .map(|(k, t)| json!({"kind": k, "text": t}))
        .collect();
    let fixture = json!({
        "patients": n,
        "study": params.id,
        "params": params,
        "value": VALUE,
        "seed": hex(&SEED),
        "from_relay": frames,
        "to_relay": to_relay,
    });
    Ok(fixture.to_string())
}

/// Writes `round-<n>.json` for each n into `dir`.
pub(crate) fn write_all(dir: &Path, sizes: &[usize], quiet: bool) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for &n in sizes {
        if n < 3 {
            return Err("at least 3 patients".into());
        }
        let t0 = std::time::Instant::now();
        let text = round(n)?;
        let path = dir.join(format!("round-{n}.json"));
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
    fn a_small_round_replays_to_a_result() {
        let v: serde_json::Value = serde_json::from_str(&round(4).unwrap()).unwrap();
        let kinds: Vec<&str> = v["from_relay"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["welcome", "roster", "keys", "delivery", "result"]);
        let sent: Vec<&str> = v["to_relay"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        assert_eq!(sent.len(), 4, "join, reveal, shares, partial sum");
        assert!(sent[0].starts_with(r#"{"type":"join""#));
        assert!(sent[1].starts_with(r#"{"type":"reveal""#));
        assert!(sent[2].starts_with(r#"{"type":"shares""#));
        assert!(sent[3].starts_with(r#"{"type":"partial_sum""#));
        assert_eq!(round(4).unwrap(), round(4).unwrap(), "deterministic");
    }
}
