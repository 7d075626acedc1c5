//! `cohort-forger`: a patient with modified code, for attack tests only (cargo feature `forge`;
//! never in a default build). It takes part in a round like `cohort-patient` but contributes a
//! chosen invalid vector with the best validity proof it can make, or deals its honest vector
//! wrongly (`inconsistent-shares`, `bad-correction`); it checks the others honestly. The other
//! patients' checks leave it out (see docs/SECURITY.md).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use cohort_core::proof::Forgery;
use cohort_core::protocol::PatientEvent;
use cohort_relay::client::{PatientOptions, PatientOutcome, run_patient};

/// A forging patient: like cohort-patient, with `--forge KIND`.
#[derive(Parser, Debug)]
#[command(name = "cohort-forger", version)]
struct Args {
    /// The relay's WebSocket URL, e.g. wss://127.0.0.1:8443/ws.
    #[arg(long, value_name = "URL")]
    relay: String,
    /// PEM file of the CA that signed the relay's certificate.
    #[arg(long, value_name = "FILE", default_value = "certs/ca.pem")]
    ca: PathBuf,
    /// Study id.
    #[arg(long, value_name = "ID")]
    study: String,
    /// The honest value the forgery starts from, in the study's unit.
    #[arg(long, value_name = "X", allow_hyphen_values = true)]
    value: String,
    /// What to forge: an invalid vector (out-of-range, bad-square, two-buckets, count,
    /// two-options) or an invalid dealing of the honest one (inconsistent-shares: Shamir
    /// rounds only; bad-correction: additive rounds only; each deals honestly otherwise).
    #[arg(long, value_name = "KIND", value_parser = parse_forgery)]
    forge: Forgery,
    /// Invite code, for studies that need one.
    #[arg(long, value_name = "CODE")]
    invite: Option<String>,
    /// Give up if the relay is silent this many seconds while a round is under way.
    #[arg(long, value_name = "N", default_value_t = 120)]
    timeout_s: u64,
}

fn parse_forgery(s: &str) -> Result<Forgery, String> {
    Forgery::from_name(s).ok_or_else(|| {
        "one of out-of-range, bad-square, two-buckets, count, two-options, \
         inconsistent-shares, bad-correction"
            .to_string()
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let mut opts = PatientOptions::new(&args.relay, &args.ca, &args.study, &args.value);
    opts.invite = args.invite;
    opts.timeout = Duration::from_secs(args.timeout_s.max(1));
    opts.forgery = Some(args.forge);
    let mut progress = |ev: &PatientEvent| match ev {
        PatientEvent::RosterFrozen { round, you, .. } => {
            eprintln!("round {round}: you are #{you} (forging {:?})", args.forge)
        }
        PatientEvent::ProofsChecked { excluded, .. } => {
            for e in excluded {
                eprintln!("excluded: #{} ({})", e.index, e.reason.as_str());
            }
        }
        PatientEvent::Abandoned { reason, .. } => eprintln!("abandoned: {reason}"),
        _ => {}
    };
    match run_patient(&opts, &mut progress).await {
        Ok(report) => match report.outcome {
            PatientOutcome::Completed(r) => {
                let line = serde_json::to_string(&r.summary()).expect("a result serializes");
                println!("{line}");
                ExitCode::SUCCESS
            }
            PatientOutcome::LeftAfterShares { .. } => ExitCode::SUCCESS,
        },
        Err(e) => {
            eprintln!("cohort-forger: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
