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

#[test]
fn binary_quick_mode_prints_one_json_line_per_configuration() {
    let out = std::process::Command::new(BENCH)
        .args(["--patients", "3,4", "--rounds", "2", "--warmup", "0"])
        .arg("--relay-bin")
        .arg(relay_bin())
        .arg("--tmp")
        .arg(tmp("bench-bin"))
        .output()
        .expect("cohort-bench runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
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

/// `--cluster` (PostgreSQL, two relays, HAProxy with deploy/haproxy.cfg): one line through
/// HAProxy and one direct, each measured on the relay that ran the study. Needs PostgreSQL
/// and HAProxy (`scripts/setup.sh` installs both); fails, never skips, without them.
#[test]
fn cluster_mode_prints_a_haproxy_and_a_direct_line() {
    let out = std::process::Command::new(BENCH)
        .args([
            "--cluster",
            "--patients",
            "3",
            "--rounds",
            "2",
            "--proofs",
            "on",
            "-q",
        ])
        .arg("--relay-bin")
        .arg(relay_bin())
        .arg("--tmp")
        .arg(tmp("bench-cluster"))
        .output()
        .expect("cohort-bench runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
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
