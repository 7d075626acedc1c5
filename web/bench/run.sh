#!/usr/bin/env bash
# The wasm patient timing: builds its own release wasm bundle with the `bench`
# feature (web/bench/pkg; the production bundle web/www/pkg has no bench exports) and cohort-bench,
# makes the simulated-round fixtures once (cached in $CARGO_TARGET_DIR/wasm-bench-fixtures),
# then times one patient's round in headless Chromium. One JSON line per size on stdout.
#   web/bench/run.sh [--sizes 100,1000] [--reps 20] [--warmup 3] [--proofs both|on|off] [--prove-reps 50]
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$HOME/.cargo/bin:$PATH"
root=$PWD
target=${CARGO_TARGET_DIR:-target}
case $target in /*) ;; *) target=$root/$target ;; esac
sizes=100,1000
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    if [ "${args[$i]}" = --sizes ]; then sizes=${args[$((i + 1))]}; fi
done

if [ ! -f web/e2e/node_modules/playwright-core/package.json ]; then
    (cd web/e2e && npm ci --no-audit --no-fund) >&2
fi
wasm-pack build web --target web --release --mode no-install --out-dir bench/pkg -- --features bench >&2
cargo build --release --locked -p cohort-bench --bin cohort-bench >&2
fixtures=$target/wasm-bench-fixtures
missing=()
for n in ${sizes//,/ }; do
    # Remade whenever cohort-bench (and so core's wire format) is newer than the fixture.
    for f in "$fixtures/round-$n.json" "$fixtures/round-$n-noproofs.json"; do
        if [ ! -f "$f" ] || [ "$target/release/cohort-bench" -nt "$f" ]; then missing+=("$n"); break; fi
    done
done
if [ ${#missing[@]} -gt 0 ]; then
    list=$(IFS=,; echo "${missing[*]}")
    echo "making fixtures for n = $list (a native simulated round each)" >&2
    "$target/release/cohort-bench" --wasm-fixtures "$fixtures" --patients "$list" --proofs both
fi
exec node web/bench/run.mjs --fixtures "$fixtures" "$@"
