//! The served code (docs/SECURITY.md, "Served code"): pages carry Subresource Integrity for
//! everything they load, the relay publishes the bundle's hashes, and `cohort-patient
//! verify-page` tells a relay serving this source's bundle from one serving anything else.

mod common;

use std::path::Path;

use cohort_relay::bundle::{self, Bundle, Manifest};
use common::TestRelay;

const PATIENT: &str = env!("CARGO_BIN_EXE_cohort-patient");

const PAGE: &str = "<!doctype html><title>patient</title>\n\
    <link rel=\"modulepreload\" href=\"js/dom.js\" integrity=\"@\">\n\
    <link rel=\"preload\" id=\"wasm-module\" as=\"fetch\" crossorigin=\"anonymous\" href=\"pkg/app.wasm\" integrity=\"@\">\n\
    <script type=\"module\" src=\"js/patient.js\" integrity=\"@\"></script>\n";

fn write_web(web: &Path) {
    std::fs::create_dir_all(web.join("js")).unwrap();
    std::fs::write(web.join("index.html"), PAGE).unwrap();
    std::fs::write(web.join("js/dom.js"), "export const $ = (id) => id;\n").unwrap();
    std::fs::write(
        web.join("js/patient.js"),
        "import { $ } from './dom.js';\n$('x');\n",
    )
    .unwrap();
}

async fn verify_page(relay: &TestRelay, web: &Path) -> (Option<i32>, serde_json::Value, String) {
    let out = tokio::process::Command::new(PATIENT)
        .args(["verify-page", "--relay"])
        .arg(relay.base())
        .arg("--ca")
        .arg(relay.ca())
        .arg("--web")
        .arg(web)
        .output()
        .await
        .expect("cohort-patient runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = stdout.lines().last().unwrap_or("null");
    let json = serde_json::from_str(line).unwrap_or(serde_json::Value::Null);
    (
        out.status.code(),
        json,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn pages_bind_their_scripts_and_the_manifest_names_every_file() {
    let relay = TestRelay::start_with(&[], |cfg| write_web(&cfg.web)).await;
    let web = relay.dir.path("web");
    let local = Bundle::load(&web).unwrap();

    let page = relay.get("/", None).await;
    assert_eq!(page.status, 200);
    let dom = std::fs::read(web.join("js/dom.js")).unwrap();
    let wasm = std::fs::read(web.join("pkg/app.wasm")).unwrap();
    let script = std::fs::read(web.join("js/patient.js")).unwrap();
    for (file, bytes) in [
        ("js/dom.js", &dom),
        ("pkg/app.wasm", &wasm),
        ("js/patient.js", &script),
    ] {
        let want = format!("\"{file}\" integrity=\"{}\"", bundle::sri(bytes));
        assert!(page.body.contains(&want), "{want} missing in the page");
    }
    assert!(!page.body.contains("integrity=\"@\""));
    assert_eq!(
        bundle::sha256_hex(page.body.as_bytes()),
        local.manifest().files["index.html"]
    );

    let served = relay.get(bundle::MANIFEST_PATH, None).await;
    assert_eq!(served.status, 200);
    let manifest: Manifest = serde_json::from_str(&served.body).unwrap();
    assert_eq!(&manifest, local.manifest());
    for f in [
        "index.html",
        "hospital.html",
        "js/dom.js",
        "js/patient.js",
        "pkg/app.js",
        "pkg/app.wasm",
    ] {
        assert!(manifest.files.contains_key(f), "{f} not in the manifest");
    }
}

#[tokio::test]
async fn verify_page_accepts_this_build_and_names_a_changed_file() {
    let relay = TestRelay::start_with(&[], |cfg| write_web(&cfg.web)).await;
    let web = relay.dir.path("web");
    // The checker's own build of the same source.
    let source = common::TmpDir::new("source");
    write_web(&source.path("web"));
    let web_copy = source.path("web");

    let (code, json, stderr) = verify_page(&relay, &web_copy).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(json["verified"], true);
    assert_eq!(json["files"], 6);
    assert_eq!(
        json["bundle"],
        Bundle::load(&web_copy).unwrap().manifest().bundle.as_str()
    );

    // The relay now serves a different script than the one its page names (a relay swapping
    // code behind a page): the checker names the script; a browser would refuse it (SRI).
    std::fs::write(
        web.join("js/dom.js"),
        "export const $ = (id) => fetch('/x?' + id);\n",
    )
    .unwrap();
    let (code, json, stderr) = verify_page(&relay, &web_copy).await;
    assert_eq!(code, Some(7), "{stderr}");
    assert_eq!(json["verified"], false);
    assert_eq!(json["different"], serde_json::json!(["js/dom.js"]));
    assert!(stderr.contains("DIFFERENT  js/dom.js"), "{stderr}");

    // A relay started on modified code: its page (through the script's integrity), the script
    // and its published manifest all differ from this build.
    let evil = TestRelay::start_with(&[], |cfg| {
        write_web(&cfg.web);
        std::fs::write(
            cfg.web.join("js/dom.js"),
            "export const $ = (id) => id + 1;\n",
        )
        .unwrap();
    })
    .await;
    let (code, json, stderr) = verify_page(&evil, &web_copy).await;
    assert_eq!(code, Some(7), "{stderr}");
    assert_eq!(
        json["different"],
        serde_json::json!(["index.html", "js/dom.js"])
    );
    assert_eq!(json["manifest_matches"], false);
}

#[tokio::test]
async fn verify_page_refuses_a_relay_it_cannot_authenticate() {
    let relay = TestRelay::start_with(&[], |cfg| write_web(&cfg.web)).await;
    let other = common::TmpDir::new("other-ca");
    cohort_relay::certs::load_or_generate(&other.path("certs")).unwrap();
    let out = tokio::process::Command::new(PATIENT)
        .args(["verify-page", "--relay"])
        .arg(relay.base())
        .arg("--ca")
        .arg(other.path("certs/ca.pem"))
        .arg("--web")
        .arg(relay.dir.path("web"))
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(6));
    assert!(String::from_utf8_lossy(&out.stderr).contains("TLS"));
}

/// The repository's own pages: every integrity placeholder names a file of the web directory
/// (only the wasm-pack output may be absent, when it has not been built).
#[test]
fn the_real_pages_name_only_files_that_exist() {
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/www");
    let b = Bundle::load(&web).unwrap();
    for page in ["index.html", "hospital.html"] {
        let text = String::from_utf8(b.page(page).unwrap().to_vec()).unwrap();
        assert!(text.contains("<script type=\"module\""), "{page}");
        for line in text
            .lines()
            .filter(|l| l.contains("<script") || l.contains("<link"))
        {
            if line.contains("rel=\"icon\"") {
                continue;
            }
            let loads_pkg = line.contains("pkg/");
            assert!(
                line.contains("integrity=\"sha256-") || loads_pkg,
                "{page}: no integrity on {line}"
            );
        }
    }
    for m in b.missing() {
        assert!(
            m.starts_with("pkg/"),
            "a page names {m}, which does not exist"
        );
    }
}
