//! The study actor's tests.
use super::*;
use crate::registry::Registry;
use cohort_core::envelope::KeyPair;
use cohort_core::message::{Join, PROTOCOL_VERSION, RelayToPatient};
use cohort_core::study::StudyParams;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;

fn join(i: u64) -> PatientToRelay {
    PatientToRelay::Join(Join {
        v: PROTOCOL_VERSION,
        study: StudyParams::demo().id,
        commitment: cohort_core::commitment::commit(
            &StudyParams::demo().id,
            &KeyPair::generate(&mut ChaCha20Rng::seed_from_u64(i)).public(),
            &cohort_core::commitment::Nonce([7; 32]),
        ),
        invite: None,
    })
}

fn link() -> (PeerLink, mpsc::Receiver<Outbound>) {
    let (tx, rx) = mpsc::channel(64);
    let kick = Arc::new(Notify::new());
    (PeerLink { tx, kick }, rx)
}

/// Everything queued for one connection until (and including) its detach.
async fn until_detached(rx: &mut mpsc::Receiver<Outbound>) -> Vec<Outbound> {
    let mut got = Vec::new();
    loop {
        let out = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("the study answers")
            .expect("the study keeps the link");
        let done = matches!(out, Outbound::Detached(_));
        got.push(out);
        if done {
            return got;
        }
    }
}

#[test]
fn a_panicking_study_abandons_its_round_and_recovers() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = Arc::new(Store::open_in_memory().unwrap());
        let reg = Registry::new(store.clone(), Clock::new());
        let h = reg
            .create(StudySpec {
                params: StudyParams::demo(),
                deadlines: Default::default(),
                invite: None,
            })
            .await
            .unwrap();
        let size = StudyParams::demo().size as u64;
        let mut rxs = Vec::new();
        for i in 0..size {
            let (link, rx) = link();
            let cmd = StudyCmd::Patient {
                peer: PeerId(i),
                msg: join(i),
                link,
            };
            assert!(h.send(cmd).await);
            rxs.push(rx);
        }
        let round = h
            .status()
            .await
            .unwrap()
            .status
            .running
            .expect("round running")
            .round;

        assert!(h.send(StudyCmd::Panic).await);

        for rx in &mut rxs {
            let got = until_detached(rx).await;
            let abandoned = got.iter().any(|o| {
                let msg = match o {
                    Outbound::Message(m) => Some((**m).clone()),
                    Outbound::Frame(Message::Text(t)) => RelayToPatient::decode(t).ok(),
                    _ => None,
                };
                matches!(msg, Some(RelayToPatient::Abandoned(a))
                        if a.round == round && a.reason == AbandonReason::StudyRestarted)
            });
            assert!(abandoned, "every member hears why its round ended");
        }
        let rows = store.rounds(&StudyParams::demo().id).await.unwrap();
        let row = rows
            .iter()
            .find(|r| r.round == round)
            .expect("round stored");
        assert_eq!(row.status, "abandoned");
        assert_eq!(row.reason.as_deref(), Some("study_restarted"));

        // The study runs again: a fresh round to enrol, and joins are accepted.
        let status = h.status().await.expect("the study answers after the panic");
        assert!(status.status.running.is_none());
        assert!(status.status.enrolling_round > round);
        let (link, mut rx) = link();
        let cmd = StudyCmd::Patient {
            peer: PeerId(99),
            msg: join(99),
            link,
        };
        assert!(h.send(cmd).await);
        let first = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(first, Outbound::Attached(_)), "join accepted");
        assert_eq!(h.status().await.unwrap().status.enrolled, 1);
    });
}
