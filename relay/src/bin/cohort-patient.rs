//! `cohort-patient`: a native patient. Joins a study on a relay, runs one round and prints the
//! result as one JSON line; see docs/API.md.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use cohort_core::answer::Answers;
use cohort_core::protocol::PatientEvent;
use cohort_core::summary::ResultSummary;
use cohort_relay::client::{PatientError, PatientOptions, PatientOutcome, run_patient};

/// A native cohort patient: contributes one value to one round of a study without revealing
/// it. Progress and the safety code go to stderr; the result is one JSON line on stdout.
#[derive(Parser, Debug)]
#[command(name = "cohort-patient", version)]
struct Args {
    /// The relay's WebSocket URL, e.g. wss://127.0.0.1:8443/ws (`?study=ID` is added to a bare
    /// /ws, so that a load balancer can route by study).
    #[arg(long, value_name = "URL")]
    relay: String,

    /// PEM file of the CA that signed the relay's certificate. Verification is always on.
    #[arg(long, value_name = "FILE", default_value = "certs/ca.pem")]
    ca: PathBuf,

    /// Study id.
    #[arg(long, value_name = "ID")]
    study: String,

    /// Your value, in the study's unit (e.g. 172.5), for a one-question study.
    #[arg(
        long,
        value_name = "X",
        allow_hyphen_values = true,
        required_unless_present_any = ["answer", "skip"],
        conflicts_with_all = ["answer", "skip"]
    )]
    value: Option<String>,

    /// An answer to one question of a questionnaire (repeatable): a number in the question's
    /// unit (height=172.5) or a choice by its label (smoker=used to). Every required question
    /// needs one; the relay's welcome says which questions the study has.
    #[arg(long, value_name = "ID=VALUE", allow_hyphen_values = true)]
    answer: Vec<String>,

    /// Skip an optional question (repeatable).
    #[arg(long, value_name = "ID")]
    skip: Vec<String>,

    /// Invite code, for studies that need one.
    #[arg(long, value_name = "CODE")]
    invite: Option<String>,

    /// Leave right after sending the shares (to test dropouts).
    #[arg(long)]
    drop_after_shares: bool,

    /// Give up if the relay is silent this many seconds while a round is under way.
    #[arg(long, value_name = "N", default_value_t = 120)]
    timeout_s: u64,

    /// Keep reconnecting this many seconds while the relay answers "try again later" (close
    /// code 1013: the study runs on another relay or is being taken over). 0: never.
    #[arg(long, value_name = "N", default_value_t = 30)]
    retry_s: u64,
}

/// The stdout line of a completed round: the core's [`ResultSummary`] plus whether this
/// patient recomputed and checked it on its own device.
#[derive(serde::Serialize)]
struct ResultLine {
    #[serde(flatten)]
    result: ResultSummary,
    checked_on_device: bool,
}

/// `cohort-patient verify-page`: checks that the code a relay serves to browser patients is the
/// bundle built from this source (see docs/SECURITY.md, "Served code").
#[derive(Parser, Debug)]
#[command(name = "cohort-patient verify-page", version)]
struct VerifyArgs {
    /// The relay's base URL, e.g. https://127.0.0.1:8443.
    #[arg(long, value_name = "URL")]
    relay: String,

    /// PEM file of the CA that signed the relay's certificate. Verification is always on.
    #[arg(long, value_name = "FILE", default_value = "certs/ca.pem")]
    ca: PathBuf,

    /// The web directory built from this source (pages, scripts and web/www/pkg), to compare
    /// with what the relay serves.
    #[arg(long, value_name = "DIR", default_value = "web/www")]
    web: PathBuf,
}

/// Compares the served bundle with the local one: one line per differing file on stderr, the
/// verification as one JSON line on stdout; exit 0 if identical, 7 if not, 6 if the relay could
/// not be checked.
async fn verify_page(args: VerifyArgs) -> ExitCode {
    match cohort_relay::bundle::verify(&args.relay, &args.ca, &args.web).await {
        Ok(v) => {
            for f in &v.different {
                eprintln!("DIFFERENT  {f}");
            }
            for f in &v.not_served {
                eprintln!("NOT SERVED {f}");
            }
            for f in &v.extra {
                eprintln!("EXTRA      {f}");
            }
            if !v.manifest_matches {
                eprintln!("the relay's published manifest differs from this build's");
            }
            eprintln!(
                "{}: {} files, bundle {}",
                if v.verified {
                    "verified"
                } else {
                    "NOT VERIFIED"
                },
                v.files,
                v.bundle
            );
            println!("{}", serde_json::to_string(&v).unwrap_or_default());
            if v.verified {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(7)
            }
        }
        Err(e) => {
            eprintln!("cohort-patient verify-page: {e}");
            ExitCode::from(6)
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("verify-page") {
        return verify_page(VerifyArgs::parse_from(std::env::args().skip(1))).await;
    }
    let args = Args::parse();
    let mut opts = match &args.value {
        Some(value) => PatientOptions::new(&args.relay, &args.ca, &args.study, value),
        None => {
            let answers = Answers::from_args(
                args.answer.iter().map(String::as_str),
                args.skip.iter().map(String::as_str),
            );
            match answers {
                Ok(a) => PatientOptions::with_answers(&args.relay, &args.ca, &args.study, a),
                Err(e) => {
                    eprintln!("cohort-patient: {}", PatientError::Answer(e));
                    return ExitCode::from(4);
                }
            }
        }
    };
    opts.invite = args.invite;
    opts.drop_after_shares = args.drop_after_shares;
    opts.timeout = Duration::from_secs(args.timeout_s.max(1));
    opts.retry_for = Duration::from_secs(args.retry_s);
    let mut progress = |ev: &PatientEvent| match ev {
        PatientEvent::Welcomed {
            study,
            round,
            enrolled,
        } => {
            let what = if study.is_single() {
                study.question.clone()
            } else {
                format!("{} questions", study.questions.len())
            };
            eprintln!(
                "joined study {} ({what}), round {round}: {enrolled} of {} enrolled",
                study.id, study.size
            )
        }
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
        PatientEvent::RelayError { message, .. } => eprintln!("relay: {message}"),
        _ => {}
    };
    match run_patient(&opts, &mut progress).await {
        // One round per process: the core Patient's own seen-round set is this process's.
        Ok(report) => match report.outcome {
            PatientOutcome::Completed(r) => {
                let line = ResultLine {
                    result: r.summary(),
                    checked_on_device: report.checked_on_device,
                };
                let line = serde_json::to_string(&line).expect("a result serializes");
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
