//! The served code: the files a browser patient runs, hashed and bound together.
//!
//! A browser patient runs whatever the relay serves, so the hospital could serve a page that
//! leaks the value. cohort makes the served code checkable:
//!
//! - At start the relay hashes every servable file of its web directory (SHA-256) and renders
//!   the HTML pages: each `integrity="@"` placeholder in a `<script src>` or `<link href>` tag
//!   becomes that file's Subresource Integrity value (`sha256-…`). The scripts, the modules
//!   they import (through `<link rel="modulepreload">`) and the wasm module (named by a
//!   `data-integrity="@"` attribute, which the placeholder also fills, and fetched with
//!   `fetch(…, { integrity })`) are therefore all bound to the page: the browser refuses to run
//!   a sub-resource whose bytes differ from what the page names, so the page's hash covers the
//!   whole application.
//! - The hashes are published as a [`Manifest`] at `/.well-known/cohort-bundle.json`.
//! - `cohort-patient verify-page` ([`verify`]) downloads the served pages, scripts, styles and
//!   wasm, and compares each with the bundle built from this source on the checking machine.
//!
//! What this proves, and what not, is in docs/SECURITY.md ("Served code").

mod verify;

pub use verify::{Verification, VerifyError, verify};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Where the manifest is served.
pub const MANIFEST_PATH: &str = "/.well-known/cohort-bundle.json";

/// Version of the manifest's format.
pub const MANIFEST_VERSION: u32 = 1;

/// The placeholder an HTML page puts where the relay writes a tag's integrity value.
const PLACEHOLDER: &str = "integrity=\"@\"";

/// Largest file the bundle hashes or the checker downloads.
const MAX_FILE_BYTES: u64 = 16 << 20;

/// Extensions of the files that make up the application (what a browser loads).
const SERVED_EXTENSIONS: [&str; 7] = ["html", "js", "mjs", "css", "svg", "wasm", "ico"];

/// The published hashes of the served code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format version, [`MANIFEST_VERSION`].
    pub version: u32,
    /// Each file's path under the web directory → its SHA-256 as lowercase hex. HTML pages are
    /// hashed as served (rendered, with integrity values filled in).
    pub files: BTreeMap<String, String>,
    /// SHA-256 (hex) over the sorted lines `PATH SPACE HASH NEWLINE`: one value naming the
    /// whole bundle.
    pub bundle: String,
}

impl Manifest {
    fn new(files: BTreeMap<String, String>) -> Manifest {
        let mut h = Sha256::new();
        for (path, hash) in &files {
            h.update(path.as_bytes());
            h.update(b" ");
            h.update(hash.as_bytes());
            h.update(b"\n");
        }
        Manifest {
            version: MANIFEST_VERSION,
            files,
            bundle: hex(&h.finalize()),
        }
    }
}

/// The web directory as served: rendered pages and the manifest.
#[derive(Debug, Clone)]
pub struct Bundle {
    pages: BTreeMap<String, Arc<Vec<u8>>>,
    manifest: Manifest,
    manifest_json: Arc<Vec<u8>>,
    missing: Vec<String>,
}

/// Why the bundle could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// A file or directory of the web directory could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file is larger than the bundle allows.
    #[error("{path} is larger than {MAX_FILE_BYTES} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of `bytes` as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The Subresource Integrity value (`sha256-BASE64`) of `bytes`.
pub fn sri(bytes: &[u8]) -> String {
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(bytes))
    )
}

fn served(name: &str) -> bool {
    !name.starts_with('.')
        && name
            .rsplit_once('.')
            .is_some_and(|(_, ext)| SERVED_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()))
        && !name.ends_with(".d.ts")
}

/// Every servable file under `web`, as (relative path with `/`, absolute path), sorted.
fn walk(web: &Path) -> Result<Vec<(String, PathBuf)>, BundleError> {
    let mut out = Vec::new();
    let mut dirs = vec![(String::new(), web.to_path_buf())];
    while let Some((prefix, dir)) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|source| BundleError::Read {
            path: dir.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| BundleError::Read {
                path: dir.clone(),
                source,
            })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            let rel = format!("{prefix}{name}");
            let kind = entry.file_type().map_err(|source| BundleError::Read {
                path: path.clone(),
                source,
            })?;
            if kind.is_dir() {
                dirs.push((format!("{rel}/"), path));
            } else if kind.is_file() && served(&name) {
                out.push((rel, path));
            }
        }
    }
    out.sort();
    Ok(out)
}

fn read_file(path: &Path) -> Result<Vec<u8>, BundleError> {
    let meta = std::fs::metadata(path).map_err(|source| BundleError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(BundleError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    std::fs::read(path).map_err(|source| BundleError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Resolves `reference` (as written in a page at `page`) to a bundle path, if it is local.
fn resolve(page: &str, reference: &str) -> Option<String> {
    if reference.contains(':') || reference.starts_with("//") {
        return None;
    }
    let reference = reference.split(['?', '#']).next()?;
    let mut parts: Vec<&str> = if reference.starts_with('/') {
        Vec::new()
    } else {
        let mut p: Vec<&str> = page.split('/').collect();
        p.pop();
        p
    };
    for seg in reference.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            s => parts.push(s),
        }
    }
    Some(parts.join("/"))
}

/// The value of attribute `name` in one tag's text, if present.
fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = tag;
    while let Some(i) = rest.find(name) {
        let before_ok = i == 0 || rest.as_bytes()[i - 1].is_ascii_whitespace();
        let after = &rest[i + name.len()..];
        if before_ok && let Some(v) = after.strip_prefix("=\"") {
            return v.split('"').next();
        }
        rest = after;
    }
    None
}

/// Fills each `integrity="@"` of `html` (the page at bundle path `page`) with the SRI value
/// of the file its tag names. Placeholders naming a file that is not in `hashes` are removed
/// and the file is reported in `missing`.
fn render(
    page: &str,
    html: &str,
    sris: &BTreeMap<String, String>,
    missing: &mut Vec<String>,
) -> String {
    let mut out = String::with_capacity(html.len() + 512);
    let mut rest = html;
    while let Some(i) = rest.find(PLACEHOLDER) {
        let (head, tail) = rest.split_at(i);
        let tag_start = head.rfind('<').unwrap_or(0);
        let tag_end = tail.find('>').map_or(tail.len(), |e| e);
        let tag = format!("{}{}", &head[tag_start..], &tail[..tag_end]);
        let target = attribute(&tag, "src")
            .or_else(|| attribute(&tag, "href"))
            .and_then(|r| resolve(page, r));
        out.push_str(head);
        match target.as_ref().and_then(|t| sris.get(t)) {
            Some(v) => {
                out.push_str("integrity=\"");
                out.push_str(v);
                out.push('"');
            }
            None => missing.push(target.unwrap_or_else(|| format!("{page}: tag without src"))),
        }
        rest = &tail[PLACEHOLDER.len()..];
    }
    out.push_str(rest);
    out
}

impl Bundle {
    /// Reads and hashes the web directory `web` and renders its pages.
    pub fn load(web: &Path) -> Result<Bundle, BundleError> {
        let mut raw = Vec::new();
        for (rel, path) in walk(web)? {
            let bytes = read_file(&path)?;
            raw.push((rel, bytes));
        }
        let sris: BTreeMap<String, String> = raw
            .iter()
            .filter(|(rel, _)| !rel.ends_with(".html"))
            .map(|(rel, bytes)| (rel.clone(), sri(bytes)))
            .collect();
        let mut files = BTreeMap::new();
        let mut pages = BTreeMap::new();
        let mut missing = Vec::new();
        for (rel, bytes) in raw {
            if rel.ends_with(".html") {
                let text = String::from_utf8_lossy(&bytes);
                let rendered = render(&rel, &text, &sris, &mut missing).into_bytes();
                files.insert(rel.clone(), sha256_hex(&rendered));
                pages.insert(rel, Arc::new(rendered));
            } else {
                files.insert(rel, sha256_hex(&bytes));
            }
        }
        let manifest = Manifest::new(files);
        let manifest_json =
            Arc::new(serde_json::to_vec_pretty(&manifest).expect("a manifest always serialises"));
        Ok(Bundle {
            pages,
            manifest,
            manifest_json,
            missing,
        })
    }

    /// An empty bundle (no web directory): no pages, an empty manifest.
    pub fn empty() -> Bundle {
        let manifest = Manifest::new(BTreeMap::new());
        let manifest_json =
            Arc::new(serde_json::to_vec_pretty(&manifest).expect("a manifest always serialises"));
        Bundle {
            pages: BTreeMap::new(),
            manifest,
            manifest_json,
            missing: Vec::new(),
        }
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The manifest as served (JSON).
    pub fn manifest_json(&self) -> &[u8] {
        &self.manifest_json
    }

    /// The rendered page at bundle path `rel` (e.g. `index.html`), if it is one.
    pub fn page(&self, rel: &str) -> Option<&[u8]> {
        self.pages.get(rel).map(|p| p.as_slice())
    }

    /// Files named by an integrity placeholder but absent (e.g. the wasm bundle not built).
    pub fn missing(&self) -> &[String] {
        &self.missing
    }
}

/// The bundle path a request path names (`/` is `index.html`, `/hospital` is
/// `hospital.html`), for the pages the bundle renders.
pub fn page_for(path: &str) -> Option<&str> {
    match path {
        "/" | "/index.html" => Some("index.html"),
        "/hospital" | "/hospital/" => Some("hospital.html"),
        p => p.strip_prefix('/').filter(|r| r.ends_with(".html")),
    }
}

#[cfg(test)]
mod tests {
    use super::verify::parse_https;
    use super::*;

    fn dir() -> PathBuf {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let d = std::env::temp_dir().join(format!(
            "cohort-bundle-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(d.join("js")).unwrap();
        d
    }

    #[test]
    fn pages_get_the_integrity_of_what_they_load() {
        let d = dir();
        std::fs::write(
            d.join("index.html"),
            "<link rel=\"modulepreload\" href=\"js/a.js\" integrity=\"@\">\n\
             <script type=\"module\" src=\"./js/b.js\" integrity=\"@\"></script>\n\
             <link rel=\"stylesheet\" href=\"gone.css\" integrity=\"@\">",
        )
        .unwrap();
        std::fs::write(d.join("js/a.js"), "export const a = 1;").unwrap();
        std::fs::write(d.join("js/b.js"), "import { a } from './a.js';").unwrap();
        std::fs::write(d.join("js/types.d.ts"), "x").unwrap();
        std::fs::write(d.join(".hidden.js"), "x").unwrap();
        let b = Bundle::load(&d).unwrap();
        let page = String::from_utf8(b.page("index.html").unwrap().to_vec()).unwrap();
        assert!(page.contains(&format!(
            "href=\"js/a.js\" integrity=\"{}\"",
            sri(b"export const a = 1;")
        )));
        assert!(page.contains(&format!(
            "src=\"./js/b.js\" integrity=\"{}\"",
            sri(b"import { a } from './a.js';")
        )));
        assert!(!page.contains("integrity=\"@\""));
        assert_eq!(b.missing(), ["gone.css".to_string()]);
        let names: Vec<&String> = b.manifest().files.keys().collect();
        assert_eq!(names, ["index.html", "js/a.js", "js/b.js"]);
        assert_eq!(
            b.manifest().files["index.html"],
            sha256_hex(page.as_bytes())
        );

        // Any change to a loaded file changes the page (through its integrity) and the bundle.
        let before = b.manifest().bundle.clone();
        std::fs::write(d.join("js/a.js"), "export const a = 2;").unwrap();
        let c = Bundle::load(&d).unwrap();
        assert_ne!(c.manifest().bundle, before);
        assert_ne!(
            c.manifest().files["index.html"],
            b.manifest().files["index.html"]
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn references_resolve_inside_the_bundle() {
        assert_eq!(resolve("index.html", "js/a.js").as_deref(), Some("js/a.js"));
        assert_eq!(
            resolve("x/p.html", "../pkg/w.wasm").as_deref(),
            Some("pkg/w.wasm")
        );
        assert_eq!(
            resolve("x/p.html", "/style.css?v=1").as_deref(),
            Some("style.css")
        );
        assert_eq!(resolve("index.html", "https://cdn.example/x.js"), None);
        assert_eq!(resolve("index.html", "//cdn.example/x.js"), None);
        assert_eq!(resolve("index.html", "../../x.js"), None);
    }

    #[test]
    fn urls() {
        assert_eq!(
            parse_https("https://127.0.0.1:8443").unwrap(),
            ("127.0.0.1".into(), 8443)
        );
        assert_eq!(parse_https("https://[::1]:9/x").unwrap(), ("::1".into(), 9));
        assert_eq!(
            parse_https("https://localhost").unwrap(),
            ("localhost".into(), 443)
        );
        assert!(parse_https("http://localhost:1").is_err());
        assert!(parse_https("https://:1").is_err());
    }
}
