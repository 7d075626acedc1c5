//! `cohort-bench`: round latency, the relay's own path, its CPU and memory, and connection
//! scale, measured against a real `cohort-relay` child process over WSS (TLS 1.3).
//!
//! Per `--patients` value it starts a fresh relay on 127.0.0.1:0 with a study of that size
//! (additive: threshold = size), connects that many native patients (one tokio runtime, two
//! worker threads) before any clock starts, runs `--warmup` + `--rounds` end-to-end rounds and
//! then as many prepared rounds, and prints ONE JSON line on stdout. Progress goes to stderr.
//! With `--idle N` it instead holds N idle connections and prints one JSON line about
//! admission time and memory per connection. With `--questions Q` each configuration runs
//! twice, the one-question study and then a Q-question questionnaire (one line each). With `--cluster` each configuration runs on two
//! relays sharing a throw-away PostgreSQL behind HAProxy, through HAProxy and then direct. With `--wasm-fixtures DIR` it writes the
//! simulated rounds that the wasm timing page (web/bench/) replays. See docs/BENCHMARKS.md.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use cohort_bench::{Common, IdleConfig, Mode, Proofs, RoundsConfig};

/// Benchmarks a cohort relay with simulated native patients.
#[derive(Parser, Debug)]
#[command(name = "cohort-bench", version)]
struct Args {
    /// Patient counts to run, one configuration (and one JSON line) each.
    #[arg(long, value_delimiter = ',', default_value = "3,30,100")]
    patients: Vec<usize>,

    /// Measured rounds of each kind per configuration.
    #[arg(long, default_value_t = 20)]
    rounds: usize,

    /// Unmeasured rounds of each kind run first.
    #[arg(long, default_value_t = 1)]
    warmup: usize,

    /// Which rounds: end-to-end (every patient's work timed), prepared (the relay's own path),
    /// or both.
    #[arg(long, value_enum, default_value_t = Mode::Both)]
    mode: Mode,

    /// Also run each configuration with a questionnaire of Q required number questions (in
    /// [0, 300], one decimal, 10 buckets each; every pair correlated) and random answers: the
    /// one-question study and the Q-question one side by side, same patients and modes, one
    /// JSON line each (`"questions"`).
    #[arg(long, value_name = "Q", conflicts_with_all = ["cluster", "idle", "wasm_fixtures"],
          value_parser = clap::value_parser!(u16).range(2..=cohort_core::question::MAX_QUESTIONS as i64))]
    questions: Option<u16>,

    /// Validity proofs in the study: on, off, or both (each configuration measured with
    /// proofs off, then on; one JSON line each, with a `"proofs"` field).
    #[arg(long, value_enum, default_value_t = Proofs::Both)]
    proofs: Proofs,

    /// Instead of rounds: hold this many idle patient connections on one relay and report the
    /// time to admit them and the relay's memory per connection.
    #[arg(long, value_name = "N")]
    idle: Option<usize>,

    /// With --idle: also join every connection to a study that never fills.
    #[arg(long)]
    idle_join: bool,

    /// With --idle: seconds to hold the connections before the last memory reading.
    #[arg(long, default_value_t = 30)]
    idle_hold_s: u64,

    /// Instead of rounds: simulate one round per --patients value (and --proofs setting)
    /// natively (core's Patient and Hospital, no relay) and write the fixtures of the wasm
    /// timing page (web/bench/run.sh) into DIR as round-<n>.json (proofs on) and
    /// round-<n>-noproofs.json (proofs off).
    #[arg(long, value_name = "DIR")]
    wasm_fixtures: Option<PathBuf>,

    /// Rounds on several relays: a throw-away PostgreSQL, two `cohort-relay --database`
    /// processes and HAProxy with deploy/haproxy.cfg in front; each configuration runs through
    /// HAProxy and then direct to the relay that ran it (two JSON lines, `"via"`). Needs
    /// PostgreSQL and HAProxy (scripts/setup.sh).
    #[arg(long)]
    cluster: bool,

    /// The cohort-relay binary (default: next to this one).
    #[arg(long, value_name = "PATH")]
    relay_bin: Option<PathBuf>,

    /// Connection handshakes in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,

    /// RUST_LOG for the relay (default: the relay's own default, info).
    #[arg(long, value_name = "FILTER")]
    relay_log: Option<String>,

    /// Directory for the relays' temporary certificates, data and logs.
    #[arg(long, value_name = "DIR")]
    tmp: Option<PathBuf>,

    /// Keep the temporary directories (relay logs) after the run.
    #[arg(long)]
    keep: bool,

    /// No progress output on stderr.
    #[arg(long, short)]
    quiet: bool,
}

fn default_relay_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("cohort-relay")))
        .unwrap_or_else(|| PathBuf::from("target/release/cohort-relay"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(dir) = &args.wasm_fixtures {
        return match cohort_bench::fixture::write_all(
            dir,
            &args.patients,
            args.proofs.settings(),
            args.quiet,
        ) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("cohort-bench: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let common = Common {
        relay_bin: args.relay_bin.unwrap_or_else(default_relay_bin),
        tmp: args
            .tmp
            .unwrap_or_else(|| std::env::temp_dir().join("cohort-bench")),
        concurrency: args.concurrency,
        log_filter: args.relay_log,
        quiet: args.quiet,
        keep: args.keep,
    };
    if !common.relay_bin.exists() {
        eprintln!(
            "cohort-bench: no relay binary at {} (build it: cargo build --release -p cohort-relay, or pass --relay-bin)",
            common.relay_bin.display()
        );
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cohort-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: Result<(), String> = rt.block_on(async {
        if let Some(n) = args.idle {
            let cfg = IdleConfig {
                connections: n,
                join: args.idle_join,
                hold: Duration::from_secs(args.idle_hold_s),
            };
            let line = cohort_bench::run_idle(&common, &cfg).await?;
            println!("{line}");
            return Ok(());
        }
        if args.rounds == 0 {
            return Err("--rounds must be at least 1".into());
        }
        let question_counts: Vec<usize> = std::iter::once(1)
            .chain(args.questions.map(usize::from))
            .collect();
        let settings = args.proofs.settings();
        let configs: Vec<(usize, usize, bool)> = args
            .patients
            .iter()
            .flat_map(|&p| {
                question_counts
                    .iter()
                    .flat_map(move |&q| settings.iter().map(move |&on| (p, q, on)))
            })
            .collect();
        for (patients, questions, proofs) in configs {
            let cfg = RoundsConfig {
                patients,
                rounds: args.rounds,
                warmup: args.warmup,
                mode: args.mode,
                questions,
                proofs,
            };
            if args.cluster {
                for report in cohort_bench::cluster::run_cluster(&common, &cfg).await? {
                    println!("{}", report.to_json());
                }
                continue;
            }
            let report = cohort_bench::run_rounds(&common, &cfg).await?;
            println!("{}", report.to_json());
        }
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cohort-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
