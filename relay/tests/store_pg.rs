//! Store conformance: the same checks against SQLite and a real, throw-away PostgreSQL
//! (started by the test), plus the PostgreSQL-only lease, NOTIFY and "no value in a dump"
//! checks. `cargo test -p cohort-relay --test store_pg -- --ignored --nocapture` also
//! measures result-write latency on both.

mod support;

use std::time::{Duration, Instant};

use cohort_core::encoding::Statistics;
use cohort_core::message::AbandonReason;
use cohort_core::protocol::hospital::RoundOutcome;
use cohort_core::questionnaire::QuestionnaireResult;
use cohort_core::study::StudySpec;
use cohort_relay::store::{LOCAL_OWNER, RoundStart, Store, StoreError};
use cohort_relay::views::ResultRow;
use support::pg;

/// The patients' values of the imaginary round below: they must never reach the store.
const VALUES: [&str; 3] = ["163.7", "171.9", "174.9"];

fn spec(id: &str) -> StudySpec {
    format!("id={id},size=3,threshold=3,min=0,max=300,decimals=1,buckets=10")
        .parse()
        .unwrap()
}

fn outcome(study: &str, round: u64) -> RoundOutcome {
    let roster = cohort_core::roster::Roster {
        study: spec(study).params,
        round,
        threshold: 3,
        members: vec![],
    };
    let statistics = Statistics {
        count: 3,
        sum: 510.5,
        mean: 170.16666666666666,
        stddev: 4.8,
        histogram: vec![0, 0, 0, 0, 0, 3, 0, 0, 0, 0],
    };
    RoundOutcome {
        study: study.into(),
        round,
        questionnaire: QuestionnaireResult::from_statistics(&statistics),
        statistics: Some(statistics),
        roster_size: 3,
        threshold: 3,
        contributors: vec![1, 2, 3],
        partial_sums: 3,
        excluded: Vec::new(),
        safety_code: roster.safety_code(&[]),
        started_ms: 1000 * round,
        finished_ms: 1000 * round + 500,
    }
}

/// A questionnaire study and a completed round of it (the result as the core decodes it).
fn survey_spec() -> StudySpec {
    StudySpec::from_json(
        r#"{"id":"q","size":3,"questions":[
          {"id":"h","kind":"number","text":"?","unit":"cm","min":100,"max":200,"decimals":1,"buckets":2},
          {"id":"w","kind":"number","text":"?","unit":"kg","min":30,"max":130,"decimals":0,"buckets":2,"optional":true},
          {"id":"s","kind":"choice","text":"?","options":["no","yes, \"often\""]}]}"#,
    )
    .unwrap()
}

fn survey_outcome(round: u64) -> RoundOutcome {
    let questionnaire: QuestionnaireResult = serde_json::from_str(
        r#"{"count":3,
          "questions":{"h":{"count":3,"sum":510.5,"mean":170.16666666666666,"stddev":4.8,"histogram":[1,2]},
                       "w":{"count":2,"sum":150.0,"mean":75.0,"stddev":5.0,"histogram":[1,1]},
                       "s":{"count":3,"counts":{"no":1,"yes, \"often\"":2}}},
          "pairs":[{"x":"h","y":"w","n":2,"mean_x":170.0,"mean_y":75.0,"r":1.0,"slope":2.5,"intercept":-350.0}],
          "by_option":[{"choice":"s","number":"h","option":"no","n":1,"mean":165.0},
                       {"choice":"s","number":"h","option":"yes, \"often\"","n":2,"mean":172.75},
                       {"choice":"s","number":"w","option":"no","n":0,"mean":null},
                       {"choice":"s","number":"w","option":"yes, \"often\"","n":2,"mean":75.0}]}"#,
    )
    .unwrap();
    RoundOutcome {
        study: "q".into(),
        questionnaire,
        statistics: None,
        ..outcome("a", round)
    }
}

fn start<'a>(study: &'a str, round: u64, code: &'a str) -> RoundStart<'a> {
    RoundStart {
        study,
        round,
        roster_size: 3,
        threshold: 3,
        safety_code: code,
        started_at_ms: 1000 * round,
    }
}

/// The checks every store must pass. `reopen` opens the same database again (as a restarted
/// relay would).
async fn conformance<F, Fut>(s: Store, reopen: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Store>,
{
    // Studies: unique ids, oldest first, round trip.
    assert!(s.insert_study(&spec("a"), 1).await.unwrap());
    assert!(s.insert_study(&spec("b"), 2).await.unwrap());
    assert!(!s.insert_study(&spec("a"), 3).await.unwrap());
    assert_eq!(s.studies().await.unwrap(), vec![spec("a"), spec("b")]);
    assert_eq!(s.study("b").await.unwrap(), Some(spec("b")));
    assert_eq!(s.study("c").await.unwrap(), None);

    // Rounds: started, completed, abandoned; next round past every started one.
    assert_eq!(s.next_round("a").await.unwrap(), 1);
    let o = outcome("a", 1);
    let code = o.safety_code.as_str().to_owned();
    s.round_started(&start("a", 1, &code)).await.unwrap();
    assert_eq!(s.next_round("a").await.unwrap(), 2);
    assert!(s.results("a").await.unwrap().is_empty());
    assert_eq!(s.rounds("a").await.unwrap()[0].status, "running");
    s.round_completed(&o).await.unwrap();
    let want = ResultRow::from_outcome(&spec("a").params, &o);
    assert_eq!(s.results("a").await.unwrap(), vec![want.clone()]);
    assert_eq!(s.completed_count("a").await.unwrap(), 1);
    s.round_started(&start("a", 2, &code)).await.unwrap();
    s.round_abandoned("a", 2, &AbandonReason::Shutdown, 5000)
        .await
        .unwrap();
    s.round_started(&start("a", 3, &code)).await.unwrap();
    s.round_started(&start("b", 1, &code)).await.unwrap();

    // A new owner of study b marks only b's round relay_restarted.
    assert_eq!(s.abandon_in_flight_of("b", 5500).await.unwrap(), 1);
    assert_eq!(s.rounds("a").await.unwrap()[2].status, "running");

    // Reopening (a restarted relay): results survive, the round in flight is abandoned.
    drop(s);
    let s = reopen().await;
    assert_eq!(s.results("a").await.unwrap(), vec![want]);
    assert_eq!(s.abandon_in_flight(6000).await.unwrap(), 1);
    assert_eq!(s.abandon_in_flight(6001).await.unwrap(), 0);
    let rounds = s.rounds("a").await.unwrap();
    assert_eq!(rounds.len(), 3);
    assert_eq!(rounds[0].status, "completed");
    assert_eq!(rounds[0].bucket_edges.as_ref().map(Vec::len), Some(11));
    assert_eq!(rounds[1].status, "abandoned");
    assert_eq!(rounds[1].reason.as_deref(), Some("shutdown"));
    assert_eq!(rounds[1].finished_at_ms, Some(5000));
    assert_eq!(rounds[2].reason.as_deref(), Some("relay_restarted"));
    assert_eq!(rounds[2].finished_at_ms, Some(6000));
    assert_eq!(rounds[2].count, None);
    assert_eq!(rounds[2].bucket_edges, None);
    let b = s.rounds("b").await.unwrap();
    assert_eq!(b[0].reason.as_deref(), Some("relay_restarted"));
    assert_eq!(b[0].finished_at_ms, Some(5500));
    assert_eq!(s.next_round("a").await.unwrap(), 4);
    assert_eq!(s.completed_count("a").await.unwrap(), 1);
    // Both backends give the same JSON to the API.
    let json = serde_json::to_value(s.rounds("a").await.unwrap()).unwrap();
    assert_eq!(json[0]["histogram"][5], 3);
    assert_eq!(json[0]["contributors"], serde_json::json!([1, 2, 3]));
    assert_eq!(json[0]["questions"]["value"]["count"], 3);

    // A questionnaire round keeps its whole result (schema version 2), across a reopen.
    assert!(s.insert_study(&survey_spec(), 7).await.unwrap());
    let o = survey_outcome(1);
    s.round_started(&start("q", 1, &code)).await.unwrap();
    s.round_completed(&o).await.unwrap();
    let want = ResultRow::from_outcome(&survey_spec().params, &o);
    assert!(want.bucket_edges.is_empty());
    assert_eq!(s.results("q").await.unwrap(), vec![want.clone()]);
    drop(s);
    let s = reopen().await;
    let got = s.results("q").await.unwrap();
    assert_eq!(got, vec![want]);
    assert_eq!(got[0].questionnaire(), o.questionnaire);
    let json = serde_json::to_value(s.rounds("q").await.unwrap()).unwrap();
    assert_eq!(json[0]["sum"], serde_json::Value::Null);
    assert_eq!(json[0]["count"], 3);
    assert_eq!(json[0]["pairs"][0]["slope"], 2.5);
    assert_eq!(json[0]["questions"]["s"]["counts"]["yes, \"often\""], 2);
    // A restarted round (same id) forgets the stored result until it completes again.
    s.round_started(&start("q", 1, &code)).await.unwrap();
    assert!(s.results("q").await.unwrap().is_empty());
}

/// A database written by schema version 1 (before per-question results) is migrated at open:
/// its rounds read as before, and a new questionnaire round stores its whole result.
#[tokio::test]
async fn sqlite_version_1_database_is_migrated() {
    let dir = std::env::temp_dir().join(format!("cohort-store-v1-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    {
        let c = rusqlite::Connection::open(dir.join(cohort_relay::store::DB_FILE)).unwrap();
        c.execute_batch(include_str!("../src/store/migrations/sqlite_0001_init.sql"))
            .unwrap();
        let spec_json = serde_json::to_string(&spec("a")).unwrap();
        c.execute(
            "INSERT INTO studies (id, spec, created_at_ms) VALUES ('a', ?1, 1)",
            [spec_json],
        )
        .unwrap();
        c.execute_batch(
            "INSERT INTO rounds (study, round, status, roster_size, threshold, safety_code,
               started_at_ms, finished_at_ms, count, sum, mean, stddev, histogram, contributors,
               partial_sums)
             VALUES ('a', 1, 'completed', 3, 3, '1234 5678 9012', 1000, 1500, 3, 510.5,
               170.16666666666666, 4.8, '[0,0,0,0,0,3,0,0,0,0]', '[1,2,3]', 3)",
        )
        .unwrap();
        let v: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, 1);
    }
    let s = Store::open(&dir).unwrap();
    let rows = s.results("a").await.unwrap();
    assert_eq!(rows.len(), 1);
    let mut o = outcome("a", 1);
    o.safety_code = cohort_core::roster::SafetyCode::from_stored("1234 5678 9012".into());
    assert_eq!(rows[0], ResultRow::from_outcome(&spec("a").params, &o));
    assert!(s.insert_study(&survey_spec(), 7).await.unwrap());
    let q = survey_outcome(1);
    s.round_completed(&q).await.unwrap();
    assert_eq!(
        s.results("q").await.unwrap()[0].questionnaire(),
        q.questionnaire
    );
    drop(s);
    let c = rusqlite::Connection::open(dir.join(cohort_relay::store::DB_FILE)).unwrap();
    let v: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, 2);
    drop(c);
    // Opening again applies nothing twice.
    let s = Store::open(&dir).unwrap();
    assert_eq!(s.results("a").await.unwrap().len(), 1);
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn sqlite_store_conforms() {
    let dir = std::env::temp_dir().join(format!("cohort-store-sqlite-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let s = Store::open(&dir).unwrap();
    assert!(!s.is_postgres());
    conformance(s, || async { Store::open(&dir).unwrap() }).await;
    // The lease is trivially the local relay's.
    let s = Store::open(&dir).unwrap();
    let ttl = Duration::from_secs(1);
    assert!(s.try_acquire("a", "x", ttl).await.unwrap());
    assert!(s.try_acquire("a", "y", ttl).await.unwrap());
    assert!(s.renew("a", "y", ttl).await.unwrap());
    assert_eq!(s.owner_of("a").await.unwrap().as_deref(), Some(LOCAL_OWNER));
    assert!(matches!(
        s.listen_changes().await,
        Err(StoreError::Unsupported)
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn postgres_store_conforms() {
    let pg = pg::start("conform");
    let url = pg.url();
    let s = Store::connect_postgres(&url).await.unwrap();
    assert!(s.is_postgres());
    // Connecting again re-runs the migrations: already applied, nothing changes.
    conformance(s, || async { Store::connect_postgres(&url).await.unwrap() }).await;

    // No value reaches the database: dump it and grep. The aggregate is there (the grep
    // works), the patients' values are not.
    let dump = pg.dump().unwrap();
    assert!(
        dump.contains("510.5"),
        "the dump should hold the stored sum"
    );
    assert!(dump.contains("schema_migrations"));
    for v in VALUES {
        assert!(!dump.contains(v), "value {v} found in the database dump");
    }
}

#[tokio::test]
async fn postgres_lease_rules_between_two_owners() {
    let pg = pg::start("lease");
    // Two relays, each with its own connections.
    let a = Store::connect_postgres(&pg.url()).await.unwrap();
    let b = Store::connect_postgres(&pg.url()).await.unwrap();
    let long = Duration::from_secs(30);
    let short = Duration::from_millis(300);

    assert_eq!(a.owner_of("s").await.unwrap(), None);
    assert!(a.try_acquire("s", "relay-a", long).await.unwrap());
    assert!(
        !b.try_acquire("s", "relay-b", long).await.unwrap(),
        "live lease stolen"
    );
    assert_eq!(b.owner_of("s").await.unwrap().as_deref(), Some("relay-a"));
    assert!(a.renew("s", "relay-a", long).await.unwrap());
    assert!(
        !b.renew("s", "relay-b", long).await.unwrap(),
        "renewed another's lease"
    );
    assert!(
        !b.release("s", "relay-b").await.unwrap(),
        "released another's lease"
    );
    assert!(
        a.try_acquire("s", "relay-a", short).await.unwrap(),
        "owner re-acquires"
    );
    // Other studies are independent.
    assert!(b.try_acquire("t", "relay-b", long).await.unwrap());

    // Expiry: the owner can no longer renew, anyone may take it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(a.owner_of("s").await.unwrap(), None);
    assert!(
        !a.renew("s", "relay-a", long).await.unwrap(),
        "renewed an expired lease"
    );
    assert!(
        b.try_acquire("s", "relay-b", long).await.unwrap(),
        "expired lease not taken"
    );
    assert!(!a.try_acquire("s", "relay-a", long).await.unwrap());
    assert_eq!(a.owner_of("s").await.unwrap().as_deref(), Some("relay-b"));

    // Release frees it at once.
    assert!(b.release("s", "relay-b").await.unwrap());
    assert_eq!(a.owner_of("s").await.unwrap(), None);
    assert!(a.try_acquire("s", "relay-a", long).await.unwrap());

    // Racing acquirers: exactly one wins.
    let mut wins = 0;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let st = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { st.try_acquire("race", &format!("r{i}"), long).await })
        })
        .collect();
    for t in tasks {
        if t.await.unwrap().unwrap() {
            wins += 1;
        }
    }
    assert_eq!(wins, 1);
}

#[tokio::test]
async fn postgres_notify_reaches_a_listener_on_another_relay() {
    let pg = pg::start("notify");
    let a = Store::connect_postgres(&pg.url()).await.unwrap();
    let b = Store::connect_postgres(&pg.url()).await.unwrap();
    let mut changes = b.listen_changes().await.unwrap();
    a.notify_changed("height").await.unwrap();
    a.notify_changed("weight").await.unwrap();
    for want in ["height", "weight"] {
        let got = tokio::time::timeout(Duration::from_secs(5), changes.next())
            .await
            .expect("no notification within 5 s");
        assert_eq!(got.as_deref(), Some(want));
    }
}

async fn write_latency(s: &Store, study: &str, n: u64) -> (f64, f64) {
    s.insert_study(&spec(study), 1).await.unwrap();
    let mut us = Vec::new();
    for round in 1..=n {
        let o = outcome(study, round);
        let t = Instant::now();
        s.round_completed(&o).await.unwrap();
        us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    us.sort_by(f64::total_cmp);
    (us[us.len() / 2], us[us.len() * 99 / 100])
}

#[tokio::test]
#[ignore = "measurement; run with --ignored --nocapture"]
async fn measure_result_write_latency() {
    let n = 1000;
    let dir = std::env::temp_dir().join(format!("cohort-store-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let sqlite = Store::open(&dir).unwrap();
    let (p50, p99) = write_latency(&sqlite, "bench", n).await;
    println!("result write latency sqlite: n={n} p50={p50:.0} us p99={p99:.0} us");
    let pg = pg::start("bench");
    let postgres = Store::connect_postgres(&pg.url()).await.unwrap();
    let (p50, p99) = write_latency(&postgres, "bench", n).await;
    println!("result write latency postgres: n={n} p50={p50:.0} us p99={p99:.0} us");
    let _ = std::fs::remove_dir_all(&dir);
}
