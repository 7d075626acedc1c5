#!/usr/bin/env bash
# Builds cohort (the wasm bundle and the relay, both release) and runs the relay with a demo
# study. Arguments go to cohort-relay; with none it listens on https://127.0.0.1:8443, serves
# web/www, keeps TLS material in certs/ and results in ./data, and runs the study "demo"
# (height in cm, 0-300, one decimal, 10 buckets, cohort of 3). Examples:
#   ./scripts/demo.sh
#   ./scripts/demo.sh --listen 127.0.0.1:9443 --study id=height,size=5,threshold=3,min_cohort=3
set -euo pipefail
cd "$(dirname "$0")/.."

# The demo needs no browser of its own: Chromium is for the tests only.
source scripts/setup.sh --no-browser

echo "=== building the wasm bundle (web/www/pkg)"
wasm-pack build web --target web --release --mode no-install --out-dir www/pkg
echo "=== building the relay (release)"
cargo build --release --locked -p cohort-relay

cat <<'NOTE'

=== starting the relay
Open the "patient page" URL printed below in THREE browser tabs, enter a value in each and
join; when the third joins the round runs. Open the "dashboard" URL in a fourth tab and paste
the admin token (printed once on the first start, kept in data/) to watch the round and the
results. Every tab shows a 12-digit safety code: they must all be equal.

The certificate is signed by a local CA that the relay made in certs/ on its first start.
Either make your browser trust certs/ca.pem (Chromium: Settings > Privacy and security >
Security > Manage certificates > Authorities > Import; Firefox: Settings > Privacy & Security >
Certificates > View Certificates > Authorities > Import), or click through the warning
(Advanced > Proceed) once per browser session. Stop the relay with Ctrl-C.

NOTE
# cargo puts the binary under $CARGO_TARGET_DIR if the caller set one, else under target/.
exec "${CARGO_TARGET_DIR:-target}/release/cohort-relay" "$@"
