//! A deviating hospital over real WSS against real `cohort-patient` processes. The hospital is
//! built here, in the test, from the relay library's TLS pieces and the core's `Hospital`; it
//! is not reachable from the production binary. It tries the contributor-set attack: patients
//! 1–3 are told the contributor set is everyone, patients 3–5 that patient 1 "dropped", hoping
//! for two aggregates whose difference is patient 1's value. Under 2t > n + c (n = 5, t = 3,
//! c = 0) the groups overlap in patient 3, who answers once and refuses the second request, so
//! the hospital never holds t partial sums over the second set: it learns nothing.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use cohort_core::field::Fe;
use cohort_core::frame::ShareList;
use cohort_core::message::{Delivery, PatientToRelay, RelayToPatient};
use cohort_core::protocol::{Hospital, HospitalOutput, PeerId};
use cohort_core::sharing::Scheme;
use cohort_core::study::StudySpec;
use cohort_relay::ws::to_message;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

const PATIENT: &str = env!("CARGO_BIN_EXE_cohort-patient");
const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_relay_contributor_set_attack_learns_nothing() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("hostile-relay-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let material = cohort_relay::certs::load_or_generate(&dir).unwrap();
    let ca = material.ca.clone().expect("a development CA");
    let acceptor =
        tokio_rustls::TlsAcceptor::from(cohort_relay::tls::server_config(&material).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let url = format!("wss://localhost:{port}/ws");

    let values = ["150.0", "160.0", "170.0", "180.0", "190.0"];
    let mut children = Vec::new();
    for v in values {
        children.push(
            Command::new(PATIENT)
                .args(["--relay", &url, "--ca"])
                .arg(&ca)
                .args(["--study", "h", "--value", v, "--timeout-s", "20"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .unwrap(),
        );
    }

    // Accept the five connections; every frame in goes to one channel, tagged by connection.
    let (tx, mut rx) = mpsc::unbounded_channel::<(u64, PatientToRelay)>();
    let mut sinks = Vec::new();
    for peer in 0..5u64 {
        let (tcp, _) = tokio::time::timeout(LIMIT, listener.accept())
            .await
            .unwrap()
            .unwrap();
        let tls = acceptor.accept(tcp).await.unwrap();
        let ws = tokio_tungstenite::accept_async(tls).await.unwrap();
        let (sink, mut stream) = ws.split();
        sinks.push(sink);
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(Ok(m)) = stream.next().await {
                let msg = match m {
                    Message::Text(t) => PatientToRelay::decode(&t),
                    Message::Binary(b) => PatientToRelay::decode_binary(&b),
                    _ => continue,
                };
                let _ = tx.send((peer, msg.unwrap()));
            }
        });
    }
    drop(tx);

    // Without validity proofs: this attack is on the partial sums, which the proofs' verdicts
    // would otherwise fix first (their own attacks are in core/tests/forging.rs).
    let spec: StudySpec =
        "id=h,size=5,threshold=3,min_cohort=3,min=0,max=300,decimals=1,proofs=off"
            .parse()
            .unwrap();
    let mut hospital = Hospital::new(spec, 1).unwrap();
    let mut index_of: BTreeMap<u64, u32> = BTreeMap::new();
    let mut commitment_of = BTreeMap::new();
    // Partial sums received, per connection, in order.
    let mut partials: BTreeMap<u64, Vec<Vec<Fe>>> = BTreeMap::new();
    let without_1: Vec<u32> = vec![2, 3, 4, 5];
    let mut seconds_sent = false;
    let run = async {
        while let Some((peer, msg)) = rx.recv().await {
            match &msg {
                PatientToRelay::PartialSum(p) => {
                    partials.entry(peer).or_default().push(p.sum.clone());
                }
                PatientToRelay::Join(j) => {
                    commitment_of.insert(peer, j.commitment);
                }
                _ => {}
            }
            let _ = hospital.handle(0, PeerId(peer), msg);
            let mut sends = Vec::new();
            while let Some(out) = hospital.poll_output() {
                match out {
                    HospitalOutput::Send { to, msg } => sends.push((to, msg)),
                    HospitalOutput::Broadcast { to, msg } => {
                        sends.extend(to.into_iter().map(|p| (p, msg.clone())));
                    }
                    _ => {}
                }
            }
            for (to, msg) in sends {
                let mut frames = vec![msg.clone()];
                match &msg {
                    RelayToPatient::Roster(r) => {
                        let mine = commitment_of[&to.0];
                        let me = r.roster.members.iter().find(|m| m.commitment == mine);
                        index_of.insert(to.0, me.expect("each patient is in the roster").index);
                    }
                    // The deviation: each group gets its own contributor set.
                    RelayToPatient::Delivery(d) => {
                        let me = index_of[&to.0];
                        frames = match me {
                            1 | 2 => vec![msg.clone()],
                            3 => vec![msg.clone(), restrict(d, &without_1)],
                            _ => vec![restrict(d, &without_1)],
                        };
                        seconds_sent |= me == 3;
                    }
                    _ => {}
                }
                for f in frames {
                    let _ = sinks[to.0 as usize].send(to_message(f.encode())).await;
                }
            }
            if hospital.status().running.is_none() && seconds_sent {
                break;
            }
        }
    };
    tokio::time::timeout(LIMIT, run)
        .await
        .expect("round settles");
    let outputs: Vec<_> =
        futures_util::future::join_all(children.into_iter().map(|c| c.wait_with_output())).await;

    // Patient 3 (in both groups) sent exactly one partial sum and refused the second request.
    let peer3 = *index_of.iter().find(|(_, i)| **i == 3).unwrap().0;
    assert_eq!(partials.get(&peer3).map(Vec::len), Some(1));
    // Connections are accepted in any order: find patient 3's process by what it printed.
    let out3 = outputs
        .iter()
        .flatten()
        .find(|o| String::from_utf8_lossy(&o.stderr).contains("you are #3"))
        .expect("patient 3's process");
    let stderr3 = String::from_utf8_lossy(&out3.stderr);
    assert_ne!(out3.status.code(), Some(0));
    assert!(stderr3.contains("second partial sum"), "{stderr3}");
    // Over the second set {2..5} the hospital holds the sums of patients 4 and 5 only: 2 < t.
    let over_second: Vec<(u32, Vec<Fe>)> = index_of
        .iter()
        .filter(|(_, i)| **i >= 4)
        .filter_map(|(p, i)| partials.get(p).map(|s| (*i, s[0].clone())))
        .collect();
    assert!(over_second.len() < 3);
    let points: Vec<(u32, &[Fe])> = over_second
        .iter()
        .map(|(i, s)| (*i, s.as_slice()))
        .collect();
    assert!(Scheme::new(5, 3).unwrap().reconstruct(&points).is_err());
    // No patient shows a result: the mixed partial sums are no aggregate.
    for o in outputs.iter().flatten() {
        assert!(
            !String::from_utf8_lossy(&o.stdout).contains("\"checked_on_device\""),
            "{}",
            String::from_utf8_lossy(&o.stdout)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The delivery `d` restricted to `set` (shares from outside it withheld).
fn restrict(d: &Delivery, set: &[u32]) -> RelayToPatient {
    let mut shares = ShareList::with_capacity(d.shares.sealed_len(), set.len());
    for (from, sealed) in d.shares.iter().filter(|(from, _)| set.contains(from)) {
        assert!(shares.push(from, sealed));
    }
    RelayToPatient::Delivery(Delivery {
        round: d.round,
        contributors: set.to_vec(),
        shares,
        extra: ShareList::with_capacity(0, 0),
    })
}
