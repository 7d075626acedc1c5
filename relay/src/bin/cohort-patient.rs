//! `cohort-patient`: a native patient. Joins a study on a relay, runs one round and prints the
//! result as one JSON line; see docs/API.md.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use cohort_core::protocol::PatientEvent;
use cohort_relay::client::{PatientOptions, PatientOutcome, run_patient};

/// A native cohort patient: contributes one value to one round of a study without revealing
/// it. Progress and the safety code go to stderr; the result is one JSON line on stdout.
#[derive(Parser, Debug)]
#[command(name = "cohort-patient", version)]
struct Args {
    /// The relay's WebSocket URL, e.g. wss://127.0.0.1:8443/ws.
    #[arg(long, value_name = "URL")]
    relay: String,

    /// PEM file of the CA that signed the relay's certificate. Verification is always on.
    #[arg(long, value_name = "FILE", default_value = "certs/ca.pem")]
    ca: PathBuf,

    /// Study id.
    #[arg(long, value_name = "ID")]
    study: String,

    /// Your value, in the study's unit (e.g. 172.5).
    #[arg(long, value_name = "X", allow_hyphen_values = true)]
    value: String,

    /// Invite code, for studies that need one.
    #[arg(long, value_name = "CODE")]
    invite: Option<String>,

    /// Leave right after sending the shares (to test dropouts).
    #[arg(long)]
    drop_after_shares: bool,

    /// Give up if the relay is silent this many seconds while a round is under way.
    #[arg(long, value_name = "N", default_value_t = 120)]
    timeout_s: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let mut opts = PatientOptions::new(&args.relay, &args.ca, &args.study, &args.value);
    opts.invite = args.invite;
    opts.drop_after_shares = args.drop_after_shares;
    opts.timeout = Duration::from_secs(args.timeout_s.max(1));
    let mut progress = |ev: &PatientEvent| match ev {
        PatientEvent::Welcomed {
            study,
            round,
            enrolled,
        } => eprintln!(
            "joined study {} ({}), round {round}: {enrolled} of {} enrolled",
            study.id, study.question, study.size
        ),
        PatientEvent::Enrolment { enrolled, size } => eprintln!("{enrolled} of {size} enrolled"),
        PatientEvent::RosterFrozen {
            round,
            n,
            threshold,
            you,
            safety_code,
        } => {
            eprintln!("round {round}: {n} patients, threshold {threshold}, you are #{you}");
            eprintln!("safety code: {safety_code}");
        }
        PatientEvent::SharesSent { .. } => eprintln!("sealed shares sent"),
        PatientEvent::PartialSumSent { contributors, .. } => {
            eprintln!("partial sum sent ({contributors} contributors)")
        }
        _ => {}
    };
    match run_patient(&opts, &mut progress).await {
        // One round per process: the core Patient's own seen-round set is this process's.
        Ok(report) => match report.outcome {
            PatientOutcome::Completed(r) => {
                let line = serde_json::json!({
                    "study": r.study,
                    "round": r.round,
                    "count": r.statistics.count,
                    "sum": r.statistics.sum,
                    "mean": r.statistics.mean,
                    "stddev": r.statistics.stddev,
                    "histogram": r.statistics.histogram,
                    "safety_code": r.safety_code.to_string(),
                    "roster_size": r.roster_size,
                    "contributors": r.contributors,
                    "partial_sums": r.partial_sums,
                    "checked_on_device": report.checked_on_device,
                });
                println!("{line}");
                ExitCode::SUCCESS
            }
            PatientOutcome::LeftAfterShares { round } => {
                eprintln!("left round {round} after sending the shares (--drop-after-shares)");
                ExitCode::SUCCESS
            }
        },
        Err(e) => {
            eprintln!("cohort-patient: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
