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

    /// PostgreSQL store, e.g. postgres://cohort@127.0.0.1:5433/cohort (no TLS: loopback or a
    /// trusted network). Without it, SQLite in --data.
    #[arg(
        long,
        value_name = "URL",
        env = "COHORT_DATABASE_URL",
        hide_env_values = true
    )]
    database: Option<String>,

    /// This relay's name in the study leases (with --database); default HOSTNAME:PORT:PID.
    /// Must differ between live relays.
    #[arg(long, value_name = "NAME", env = "COHORT_RELAY_ID")]
    relay_id: Option<String>,

    /// A study to run (repeatable), e.g.
    /// "id=height,size=3,threshold=3,min=0,max=300,decimals=1,buckets=10". Other keys:
    /// question, unit, min_cohort, enrol_s, shares_s, partials_s, invite. A study whose id is
    /// already stored keeps its stored parameters. Without any study (given or stored), a
    /// demo study "demo" (3 patients, heights in cm) is created.
    #[arg(long, value_name = "SPEC")]
    study: Vec<StudySpec>,

    /// A study to run in its JSON form (repeatable), e.g. a questionnaire:
    /// {"id":"survey","size":5,"questions":[{"id":"height","kind":"number",…}]} (see
    /// docs/API.md). Unknown or repeated keys and bad values are refused at start, naming the
    /// file and the key. A study whose id is already stored keeps its stored parameters.
    #[arg(long, value_name = "FILE")]
    study_file: Vec<PathBuf>,

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
    #[arg(long, value_name = "N", default_value_t = cohort_relay::server::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,

    /// Most simultaneous connections from one IP address.
    #[arg(long, value_name = "N", default_value_t = cohort_relay::server::DEFAULT_MAX_CONNECTIONS_PER_IP)]
    max_connections_per_ip: usize,

    /// Average WebSocket messages per second allowed per connection (bursts of twice that);
    /// a connection above it is closed (1008). 0 = unlimited.
    #[arg(long, value_name = "N", default_value_t = cohort_relay::ws::DEFAULT_MESSAGES_PER_SECOND)]
    max_messages_per_second: u32,

    /// Largest cohort size a new study may have (--study or the API).
    #[arg(long, value_name = "N", default_value_t = cohort_relay::server::DEFAULT_MAX_PATIENTS_PER_STUDY)]
    max_patients_per_study: u32,

    /// Seconds a connection has to finish its TLS handshake, and then again to send its first
    /// complete request (and a dashboard its auth frame).
    #[arg(long, value_name = "SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    handshake_timeout_s: u64,

    /// Seconds one write may block before a client counts as not reading and is dropped.
    #[arg(long, value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    write_timeout_s: u64,
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
    let mut studies = args.study;
    for path in &args.study_file {
        match cohort_relay::server::read_study_file(path) {
            Ok(spec) => studies.push(spec),
            Err(e) => {
                eprintln!("cohort-relay: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let config = RelayConfig {
        listen: args.listen,
        web: args.web,
        certs: args.certs,
        data: args.data,
        database: args.database,
        relay_id: args.relay_id,
        lease_times: Default::default(),
        studies,
        admin_token: args.admin_token,
        max_message_bytes: args.max_message_bytes,
        max_connections: args.max_connections,
        max_connections_per_ip: args.max_connections_per_ip,
        max_messages_per_second: args.max_messages_per_second,
        max_patients_per_study: args.max_patients_per_study,
        handshake_timeout: std::time::Duration::from_secs(args.handshake_timeout_s),
        write_timeout: std::time::Duration::from_secs(args.write_timeout_s),
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
    if let Some(id) = relay.relay_id() {
        println!("relay id: {id} (studies run where their lease is taken)");
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
