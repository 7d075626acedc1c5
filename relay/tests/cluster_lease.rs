//! Study leases between two in-process relays on a throw-away PostgreSQL: a relay takes a
//! study when a patient asks for it, the other answers 1013 "try again later"; a socket
//! opened for one study cannot join another; a relay whose lease is taken away stops the
//! study at once (its patients' sockets close with 1013); the relay that takes the study
//! over records the round in flight `relay_restarted`.

mod common;
mod support;

use std::time::Duration;

use cohort_core::message::RelayToPatient;
use cohort_relay::cluster::LeaseTimes;
use cohort_relay::store::Store;
use common::*;
use futures_util::StreamExt;
use support::pg;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const SPEC: &str = "id=s,size=3,threshold=3,min=0,max=300,decimals=1,buckets=10";

fn fast() -> LeaseTimes {
    LeaseTimes {
        ttl: Duration::from_secs(3),
        renew_every: Duration::from_millis(500),
        stop_after: Duration::from_secs(2),
        idle_release: Duration::from_secs(600),
    }
}

async fn relay(url: &str, id: &str) -> TestRelay {
    let (url, id) = (url.to_owned(), id.to_owned());
    TestRelay::start_with(&[SPEC], move |cfg| {
        cfg.database = Some(url);
        cfg.relay_id = Some(id);
        cfg.lease_times = fast();
    })
    .await
}

async fn healthz(r: &TestRelay) -> Vec<String> {
    let h = r.get("/healthz", None).await;
    assert_eq!(h.status, 200, "{}", h.body);
    serde_json::from_value(h.json()["studies"].clone()).unwrap()
}

/// The close code the relay ends `ws` with (skipping other frames), within 10 s.
async fn close_code(ws: &mut cohort_relay::client::WsClient) -> Option<CloseCode> {
    let fut = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(f))) => return f.map(|f| f.code),
                Some(Ok(_)) => {}
                _ => return None,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .expect("closed in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_owner_per_study_and_takeover_after_a_lost_lease() {
    let pg = pg::start("lease");
    let a = relay(&pg.url(), "relay-a").await;
    let b = relay(&pg.url(), "relay-b").await;
    assert!(
        healthz(&a).await.is_empty(),
        "nothing runs before it is asked for"
    );
    assert!(healthz(&b).await.is_empty());

    // Three patients on A: A takes the lease, the roster freezes (a round in flight).
    let on_a = format!("{}?study=s", a.ws_url());
    let mut stalled = Vec::new();
    for i in 0..3 {
        stalled.push(stalling_patient(&on_a, &a.ca(), "s", 10 + i).await);
    }
    wait_for(&mut stalled[0], |m| matches!(m, RelayToPatient::Roster(_))).await;
    assert_eq!(healthz(&a).await, vec!["s".to_string()]);
    assert!(healthz(&b).await.is_empty());

    // B does not run it: 1013.
    let mut refused = stalling_patient(&format!("{}?study=s", b.ws_url()), &b.ca(), "s", 20).await;
    assert_eq!(close_code(&mut refused).await, Some(CloseCode::Again));

    // A socket opened for study s cannot join another study.
    let mut other = stalling_patient(&on_a, &a.ca(), "t", 21).await;
    let refusal = wait_for(&mut other, |m| matches!(m, RelayToPatient::Error(_))).await;
    match refusal {
        RelayToPatient::Error(e) => assert_eq!(e.code.as_str(), "forbidden"),
        _ => unreachable!(),
    }

    // The lease is taken away (and left expired): A stops the study at once and its
    // patients' sockets close with 1013.
    let store = Store::connect_postgres(&pg.url()).await.unwrap();
    let running = store
        .rounds("s")
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.status == "running")
        .expect("a round in flight")
        .round;
    let (client, conn) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let n = client
        .execute(
            "UPDATE study_owner SET owner = 'thief', expires_at = clock_timestamp() WHERE study = 's'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    for ws in &mut stalled {
        assert_eq!(close_code(ws).await, Some(CloseCode::Again));
    }
    assert!(healthz(&a).await.is_empty(), "A stopped the study");

    // B takes it over on the next patient: the round in flight is recorded relay_restarted.
    let mut taken = stalling_patient(&format!("{}?study=s", b.ws_url()), &b.ca(), "s", 30).await;
    wait_for(&mut taken, |m| matches!(m, RelayToPatient::Welcome(_))).await;
    assert_eq!(healthz(&b).await, vec!["s".to_string()]);
    let rounds = store.rounds("s").await.unwrap();
    let row = rounds.iter().find(|r| r.round == running).unwrap();
    assert_eq!(row.status, "abandoned");
    assert_eq!(row.reason.as_deref(), Some("relay_restarted"));
    assert_eq!(
        store.owner_of("s").await.unwrap().as_deref(),
        Some("relay-b")
    );

    drop(taken);
    b.relay.shutdown().await;
    assert_eq!(
        store.owner_of("s").await.unwrap(),
        None,
        "released at shutdown"
    );
    a.relay.shutdown().await;
}
