//! Committed test vectors (see `tests/vectors/README.md`).
//!
//! Good vectors are recomputed from their fixed seeds and must equal the committed files byte
//! for byte; each committed file is also checked on its own terms (shares reconstruct, sealed
//! shares open, tampered ones do not, …). Bad vectors are hand-written: malformed messages,
//! values and studies, each with the exact error it must produce.
//!
//! Regenerate the good vectors after an intended change of format or algorithm with
//! `COHORT_REGENERATE_VECTORS=1 cargo test -p cohort-core --test vectors`, then review the diff.

mod support;

use std::path::PathBuf;

use support::vectors::{GOOD, check_bad_messages, check_bad_studies, check_bad_values};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("vectors")
}

fn regenerate() -> bool {
    std::env::var("COHORT_REGENERATE_VECTORS").is_ok_and(|v| v == "1")
}

fn read(name: &str) -> String {
    let path = dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn good(name: &str) {
    let g = GOOD
        .iter()
        .find(|g| g.name == name)
        .expect("known vector file");
    let fresh = (g.generate)();
    if regenerate() {
        std::fs::write(dir().join(name), &fresh).expect("write vector file");
        (g.check)(&fresh);
        return;
    }
    let committed = read(name);
    if committed != fresh {
        let line = committed
            .lines()
            .zip(fresh.lines())
            .position(|(a, b)| a != b)
            .map_or_else(|| "length".to_string(), |i| format!("line {}", i + 1));
        panic!(
            "tests/vectors/{name} differs from its recomputation (first difference: {line}). \
             If the change is intended, run COHORT_REGENERATE_VECTORS=1 cargo test -p \
             cohort-core --test vectors and review the diff."
        );
    }
    (g.check)(&committed);
}

#[test]
fn field() {
    good("field.json");
}

#[test]
fn decimal() {
    good("decimal.json");
}

#[test]
fn encoding() {
    good("encoding.json");
}

#[test]
fn sharing() {
    good("sharing.json");
}

#[test]
fn envelope() {
    good("envelope.json");
}

#[test]
fn roster() {
    good("roster.json");
}

#[test]
fn round() {
    good("round.json");
}

#[test]
fn flp() {
    good("flp.json");
}

#[test]
fn questionnaire() {
    good("questionnaire.json");
}

#[test]
fn bad_messages() {
    check_bad_messages(&read("bad_messages.json"));
}

#[test]
fn bad_values() {
    check_bad_values(&read("bad_values.json"));
}

#[test]
fn bad_studies() {
    check_bad_studies(&read("bad_studies.json"));
}

/// Every file in `tests/vectors/` is covered by a test, and the embedded copies the wasm tests
/// use are the files on disk.
#[test]
fn every_file_is_checked() {
    let mut known: Vec<&str> = GOOD.iter().map(|g| g.name).collect();
    known.extend([
        "bad_messages.json",
        "bad_values.json",
        "bad_studies.json",
        // Checked by tests/frames.rs.
        "frames.json",
        "README.md",
    ]);
    for entry in std::fs::read_dir(dir()).expect("vectors dir") {
        let name = entry
            .expect("entry")
            .file_name()
            .into_string()
            .expect("utf-8 name");
        assert!(
            known.contains(&name.as_str()),
            "tests/vectors/{name} is not checked"
        );
    }
    if !regenerate() {
        for g in GOOD {
            assert!(
                g.committed == read(g.name),
                "{} embedded copy is stale",
                g.name
            );
        }
    }
}
