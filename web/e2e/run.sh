#!/usr/bin/env bash
# Browser end-to-end test of cohort. Builds the release wasm bundle (web/www/pkg) and the relay,
# starts the relay on a free port with temporary certificates and data, then runs e2e.mjs:
# three patient tabs and the hospital dashboard in headless Chromium over HTTPS/WSS, then
# sri.mjs: swapped scripts and wasm are refused (Subresource Integrity).
# Screenshots go to $E2E_OUT (default target/e2e). Honours CARGO_TARGET_DIR. Exits non-zero
# on any failure and always stops the relay it started.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$HOME/.cargo/bin:$PATH"
root=$PWD
target=${CARGO_TARGET_DIR:-target}
case $target in /*) ;; *) target=$root/$target ;; esac
out=${E2E_OUT:-$root/target/e2e}
mkdir -p "$out"

if [ ! -f web/e2e/node_modules/playwright-core/package.json ]; then
    (cd web/e2e && npm ci --no-audit --no-fund)
fi

t0=$SECONDS
wasm-pack build web --target web --release --mode no-install --out-dir www/pkg
echo "e2e: wasm bundle built in $((SECONDS - t0))s"
# The production bundle must not export the benchmark-only (seeded) API of the `bench` feature.
node web/e2e/exports.mjs web/www/pkg
t0=$SECONDS
# With `forge`: the same relay and patients, plus the test-only cohort-forger for case 7c.
cargo build --locked -p cohort-relay --features forge
echo "e2e: relay built in $((SECONDS - t0))s"

tmp=$(mktemp -d)
pid=""
cleanup() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

token=e2e-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
# A questionnaire study for e2e.mjs, "survey-k", with small cells suppressed (the default);
# e2e.mjs builds the same questions as "survey" (small cells shown) in the dashboard.
questions='[
  {"id":"height","kind":"number","text":"How tall are you?","unit":"cm","min":100,"max":230,"decimals":1,"buckets":13},
  {"id":"weight","kind":"number","text":"How much do you weigh?","unit":"kg","min":30,"max":200,"decimals":1,"buckets":17},
  {"id":"smoker","kind":"choice","text":"Do you smoke?","options":["no","yes","used to"]},
  {"id":"sleep","kind":"number","text":"How many hours do you sleep a night?","unit":"h","min":0,"max":24,"decimals":1,"buckets":12,"optional":true}]'
printf '{"id":"survey-k","size":3,"threshold":3,"min_cohort":3,"questions":%s}\n' "$questions" >"$tmp/survey-k.json"
: >"$tmp/relay.log"
"$target/debug/cohort-relay" --listen 127.0.0.1:0 --web web/www \
    --certs "$tmp/certs" --data "$tmp/data" --admin-token "$token" \
    --study-file "$tmp/survey-k.json" \
    --study "id=forge,size=4,threshold=3,min_cohort=3,min=0,max=300,decimals=1,buckets=10" \
    >"$tmp/relay.log" 2>&1 &
pid=$!

url=""
for _ in $(seq 300); do
    url=$(sed -n 's/^listening on \(https:[^ ]*\)$/\1/p' "$tmp/relay.log" || true)
    [ -n "$url" ] && break
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    sleep 0.1
done
if [ -z "$url" ]; then
    echo "e2e: the relay did not print 'listening on'; its output:" >&2
    cat "$tmp/relay.log" >&2
    exit 1
fi
echo "e2e: relay at $url"

rc=0
t0=$SECONDS
COHORT_FORGER="$target/debug/cohort-forger" COHORT_CA="$tmp/certs/ca.pem" \
    node web/e2e/e2e.mjs "$url/" "$token" "$out" || rc=$?
if [ "$rc" = 0 ]; then
    node web/e2e/sri.mjs "$url/" || rc=$?
fi
echo "e2e: browser test took $((SECONDS - t0))s (exit $rc)"
if [ "$rc" != 0 ]; then
    echo "e2e: relay log:" >&2
    tail -n 60 "$tmp/relay.log" >&2
fi
exit "$rc"
