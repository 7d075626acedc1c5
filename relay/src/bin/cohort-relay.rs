//! `cohort-relay`: the hospital. HTTPS + WSS on one port; see docs/API.md.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use cohort_core::study::StudySpec;
use cohort_relay::token::TokenSource;
use cohort_relay::{Relay, RelayConfig, logging};

/// The cohort hospital: serves the patient page and dashboard over HTTPS, patients and the
/// dashboard over WSS on the same port, drives each study's rounds and stores results.
#[derive(Parser, Debug)]
#[command(name = "cohort-relay", version)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8443")]
    listen: SocketAddr,

    /// Directory of the static pages (index.html, hospital.html, pkg/).
    #[arg(long, value_name = "DIR", default_value = "web/www")]
    web: PathBuf,

    /// Directory of the TLS certificates: cert.pem + key.pem are used if present; otherwise a
    /// development CA (ca.pem) and a localhost certificate are generated there.
    #[arg(long, value_name = "DIR", default_value = "certs")]
    certs: PathBuf,

    /// Directory of the SQLite database and the generated admin token.
    #[arg(long, value_name = "DIR", default_value = "data")]
    data: PathBuf,

    /// A study to run (repeatable), e.g.
    /// "id=height,size=3,threshold=3,min=0,max=300,decimals=1,buckets=10". Other keys:
    /// question, unit, min_cohort, enrol_s, shares_s, partials_s, invite. A study whose id is
    /// already stored keeps its stored parameters. Without any study (given or stored), a
    /// demo study "demo" (3 patients, heights in cm) is created.
    #[arg(long, value_name = "SPEC")]
    study: Vec<StudySpec>,

    /// Admin bearer token for /api/studies and /ws/dashboard (at least 16 characters). If not
    /// given, it is read from DATA/admin-token, or generated, printed once and saved there.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "COHORT_ADMIN_TOKEN",
        hide_env_values = true
    )]
    admin_token: Option<String>,

    /// Largest WebSocket message and frame accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = cohort_relay::ws::DEFAULT_MAX_MESSAGE_BYTES)]
    max_message_bytes: usize,

    /// Most simultaneous connections.
    #[arg(long, value_name = "N", default_value_t = 4096)]
    max_connections: usize,
}

async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    logging::init("info");
    let config = RelayConfig {
        listen: args.listen,
        web: args.web,
        certs: args.certs,
        data: args.data,
        studies: args.study,
        admin_token: args.admin_token,
        max_message_bytes: args.max_message_bytes,
        max_connections: args.max_connections,
    };
    let relay = match Relay::start(config).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cohort-relay: {e}");
            return ExitCode::FAILURE;
        }
    };
    for line in relay.startup_lines() {
        println!("{line}");
    }
    match relay.token_source() {
        TokenSource::Generated { path, token } => {
            println!(
                "admin token: {token} (generated; saved in {})",
                path.display()
            );
        }
        TokenSource::Stored(path) => println!("admin token: in {}", path.display()),
        TokenSource::Given => {}
    }
    if let Some(ca) = relay.ca_file() {
        println!("CA certificate: {} (see certs/README.md)", ca.display());
    }
    stop_signal().await;
    relay.shutdown().await;
    ExitCode::SUCCESS
}
