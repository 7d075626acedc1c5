//! cohort-bench's core loop, small: a `cohort-relay` child process, 3 native patients over WSS,
//! 2 end-to-end and 2 prepared rounds, with validity proofs on and off. Checks what the bench reports (counts, consistency of
//! its statistics, the relay's own timing and resource readings, every round's result), never
//! how fast anything was.
#![allow(missing_docs)]

use std::path::PathBuf;

use cohort_bench::{Common, Mode, RoundsConfig};
use serde_json::Value;

const BENCH: &str = env!("CARGO_BIN_EXE_cohort-bench");

/// The `cohort-relay` binary of this build (same profile, same target directory), built first
/// with the cargo that runs this test if it is not there yet: it belongs to another package, so
/// cargo does not hand its path to this test.
fn relay_bin() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let bench = PathBuf::from(BENCH);
            let dir = bench.parent().expect("the bench binary's directory");
            let profile = dir
                .file_name()
                .and_then(|p| p.to_str())
                .expect("profile dir");
            let relay = dir.join(format!("cohort-relay{}", std::env::consts::EXE_SUFFIX));
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut build = std::process::Command::new(cargo);
            build.args(["build", "-p", "cohort-relay", "--bin", "cohort-relay"]);
            if profile != "debug" {
                build.args(["--profile", profile]);
            }
            let status = build.status().expect("run cargo build for cohort-relay");
            assert!(status.success(), "building cohort-relay failed");
            assert!(relay.is_file(), "no cohort-relay at {}", relay.display());
            relay
        })
        .clone()
}

fn tmp(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_patients_two_rounds_of_each_kind_with_proofs() {
    two_rounds_of_each_kind(3, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_patients_two_rounds_of_each_kind_without_proofs() {
    two_rounds_of_each_kind(3, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_patients_two_rounds_of_each_kind_with_proofs() {
    two_rounds_of_each_kind(5, true).await;
}

async fn two_rounds_of_each_kind(n: usize, proofs: bool) {
    let common = Common {
        relay_bin: relay_bin(),
        tmp: tmp(&format!("bench-loop-{n}-{proofs}")),
        concurrency: 8,
        log_filter: None,
        quiet: true,
        keep: false,
    };
    let cfg = RoundsConfig {
        patients: n,
        rounds: 2,
        warmup: 0,
        mode: Mode::Both,
        questions: 1,
        proofs,
    };
    // Every round's result is checked inside (count n, exact sum, full roster, no exclusion),
    // and every prepared frame the relay sent (delivery; with proofs also checks and verdicts)
    // is compared with the one the patients' answers were computed from; any mismatch is an Err.
    let rep = cohort_bench::run_rounds(&common, &cfg)
        .await
        .expect("bench loop");
    assert_eq!((rep.patients, rep.rounds, rep.warmup), (n, 2, 0));
    assert_eq!(rep.proofs, proofs);
    assert_eq!(rep.e2e.len(), 2);
    assert_eq!(rep.prepared.len(), 2);
    assert_eq!(rep.e2e_relay_path_ms.len(), 2);
    assert_eq!(rep.relay_path_ms.len(), 2);
    // Round ids come from the relay: consecutive, end-to-end rounds first.
    let rounds: Vec<u64> = rep
        .e2e
        .iter()
        .map(|s| s.round)
        .chain(rep.prepared.iter().map(|s| s.round))
        .collect();
    assert_eq!(rounds, vec![1, 2, 3, 4]);
    assert!(rep.e2e.iter().all(|s| s.ms > 0.0));
    assert!(rep.prepared.iter().all(|s| s.window_ms > 0.0));
    assert!(rep.relay_path_ms.iter().all(|&ms| ms > 0.0));
    assert!(rep.cpu_e2e_ms.is_some_and(|c| c >= 0.0));
    assert!(rep.cpu_prepared_ms.is_some_and(|c| c >= 0.0));
    let (rss, peak) = (rep.rss_connected_kib.unwrap(), rep.peak_rss_kib.unwrap());
    assert!(rss > 0 && peak >= rss, "rss {rss} peak {peak}");

    let line = rep.to_json().to_string();
    let v: Value = serde_json::from_str(&line).expect("one JSON object");
    for key in [
        "patients",
        "rounds",
        "p50_ms",
        "p99_ms",
        "relay_p50_ms",
        "relay_cpu_ms_per_round",
        "relay_peak_rss_mb",
    ] {
        assert!(v[key].is_number(), "{key} missing in {line}");
    }
    assert_eq!(v["patients"], n);
    assert_eq!(v["rounds"], 2);
    assert_eq!(v["proofs"], proofs);
    let f = |k: &str| v[k].as_f64().unwrap();
    for p in ["", "relay_", "relay_seen_"] {
        let (min, p50, p99, max) = (
            f(&format!("{p}min_ms")),
            f(&format!("{p}p50_ms")),
            f(&format!("{p}p99_ms")),
            f(&format!("{p}max_ms")),
        );
        assert!(min <= p50 && p50 <= p99 && p99 <= max, "{p}: {line}");
        // Two samples, nearest rank: the median is the smaller, p99 the larger.
        assert_eq!(min, p50, "{p}: {line}");
        assert_eq!(p99, max, "{p}: {line}");
    }
    assert!(
        !common
            .tmp
            .join(format!("bench{n}-{}", std::process::id()))
            .exists()
    );
}

/// Runs the `cohort-bench` binary with `args` (and this build's relay, in a fresh temporary
/// directory `tmp_name`), requires success, and returns its JSON lines, stdout and stderr.
fn run_bench(args: &[&str], tmp_name: &str) -> (Vec<Value>, String, String) {
    let out = std::process::Command::new(BENCH)
        .args(args)
        .arg("--relay-bin")
        .arg(relay_bin())
        .arg("--tmp")
        .arg(tmp(tmp_name))
        .output()
        .expect("cohort-bench runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (lines, stdout, stderr)
}

#[test]
fn binary_quick_mode_prints_one_json_line_per_configuration() {
    let (lines, stdout, stderr) = run_bench(
        &["--patients", "3,4", "--rounds", "2", "--warmup", "0"],
        "bench-bin",
    );
    // `--proofs both` (the default): each size with proofs off, then on.
    assert_eq!(lines.len(), 4, "stdout: {stdout}");
    let got: Vec<(u64, bool)> = lines
        .iter()
        .map(|l| {
            (
                l["patients"].as_u64().unwrap(),
                l["proofs"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, [(3, false), (3, true), (4, false), (4, true)]);
    assert!(lines.iter().all(|l| l["results_checked"] == true));
    assert!(
        stderr.contains("bench3"),
        "progress goes to stderr: {stderr}"
    );
}

/// `--questions 3`: the one-question study and a 3-question questionnaire (random answers,
/// every round's result checked exactly against the answers) side by side, one line each.
#[test]
fn questions_mode_prints_a_one_question_and_a_questionnaire_line() {
    let (lines, stdout, stderr) = run_bench(
        &[
            "--patients",
            "4",
            "--questions",
            "3",
            "--proofs",
            "on",
            "--rounds",
            "2",
            "--warmup",
            "0",
        ],
        "bench-questions",
    );
    assert_eq!(lines.len(), 2, "stdout: {stdout}");
    assert_eq!(lines[0]["questions"], 1);
    assert_eq!(lines[1]["questions"], 3);
    for l in &lines {
        assert_eq!(l["patients"], 4);
        assert_eq!(l["rounds"], 2);
        assert_eq!(l["results_checked"], true);
        assert!(l["p50_ms"].as_f64().is_some_and(|v| v > 0.0), "{l}");
        assert!(l["relay_p50_ms"].as_f64().is_some_and(|v| v > 0.0), "{l}");
    }
    assert!(
        stderr.contains("bench4q3"),
        "progress names the questionnaire study: {stderr}"
    );
}

/// The bench's questionnaire check is exact: the expected result of its random answers is
/// what core's own simulated round reveals.
#[test]
fn the_expected_questionnaire_result_is_the_simulated_rounds() {
    use cohort_bench::questions;
    use cohort_core::testing::{Behaviour, run_round_answers};
    let (n, q) = (5, 4);
    let spec = questions::spec(n, q).expect("the bench's study is valid");
    assert_eq!(spec.params.questions.len(), q);
    let mut rng = cohort_bench::patients::os_rng();
    let answers: Vec<_> = (0..n)
        .map(|_| questions::random_answers(q, &mut rng))
        .collect();
    let expected = questions::expected(&spec, &answers).expect("expected result");
    assert_eq!(expected.count, n as u64);
    assert_eq!(expected.questions.0.len(), q);
    assert_eq!(expected.pairs.len(), q * (q - 1) / 2);
    let outcome = run_round_answers(&spec, &answers, &vec![Behaviour::Honest; n], 7);
    for r in &outcome.results {
        let r = r.as_ref().expect("every patient has the result");
        assert_eq!(r.questionnaire, expected);
    }
    let fewer = questions::expected(&spec, &answers[1..]).expect("expected result");
    assert_eq!(fewer.count, n as u64 - 1);
    assert_ne!(fewer, expected);
}

/// `--cluster` (PostgreSQL, two relays, HAProxy with deploy/haproxy.cfg): one line through
/// HAProxy and one direct, each measured on the relay that ran the study. Needs PostgreSQL
/// and HAProxy (`scripts/setup.sh` installs both); fails, never skips, without them.
#[test]
fn cluster_mode_prints_a_haproxy_and_a_direct_line() {
    let (lines, stdout, _) = run_bench(
        &[
            "--cluster",
            "--patients",
            "3",
            "--rounds",
            "2",
            "--proofs",
            "on",
            "-q",
        ],
        "bench-cluster",
    );
    assert_eq!(lines.len(), 2, "stdout: {stdout}");
    assert_eq!(lines[0]["via"], "haproxy");
    assert_eq!(lines[1]["via"], "direct");
    for l in &lines {
        assert_eq!(l["patients"], 3);
        assert_eq!(l["store"], "postgres");
        assert_eq!(l["relays"], 2);
        assert_eq!(l["results_checked"], true);
        assert!(l["p50_ms"].as_f64().is_some_and(|v| v > 0.0), "{l}");
        assert!(l["relay_p50_ms"].as_f64().is_some_and(|v| v > 0.0), "{l}");
    }
    assert_eq!(lines[0]["ran_on"], lines[1]["ran_on"]);
    assert!(lines[0]["haproxy_cpu_ms_per_round"].as_f64().is_some());
    assert!(lines[1].get("haproxy_cpu_ms_per_round").is_none());
}
