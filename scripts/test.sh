#!/usr/bin/env bash
# Runs every test of cohort: formatting, lints, native unit/property/simulation/relay tests, a
# type-check of the fuzz targets, the core's no_std build for wasm32, the core and web crates'
# tests in node and in headless Chromium, and the browser end-to-end test over HTTPS/WSS.
# Installs missing tools first (scripts/setup.sh). Prints "=== step" and its duration in seconds for each step, and
# "ALL OK" at the end; stops at the first failure, naming the step.
set -euo pipefail
cd "$(dirname "$0")/.."

current=""
timings=()
on_exit() {
    local rc=$?
    if [ "$rc" != 0 ] && [ -n "$current" ]; then
        echo "=== FAILED: $current (exit $rc)" >&2
    fi
}
trap on_exit EXIT

# A test run builds each crate once: incremental caches would only double the target directory
# (they were 20 of its 43 GB), and CI machines have limited disk. Set CARGO_INCREMENTAL=1 to keep them.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}

step() {
    local name=$1 start=$SECONDS
    shift
    current=$name
    echo "=== $name"
    "$@"
    echo "=== $name: $((SECONDS - start))s"
    timings+=("$(printf '%5ss  %s' "$((SECONDS - start))" "$name")")
    current=""
}

# The fuzz crates are workspaces of their own (run with nightly and cargo-fuzz), so no other
# step compiles them: type-check every target on stable so they cannot silently stop compiling
# when the core's or the relay's API changes. They share the workspace's target directory.
check_fuzz_targets() {
    local dir=${CARGO_TARGET_DIR:-$PWD/target}
    CARGO_TARGET_DIR=$dir cargo check --manifest-path core/fuzz/Cargo.toml --bins --locked
    CARGO_TARGET_DIR=$dir cargo check --manifest-path relay/fuzz/Cargo.toml --bins --locked
}

step "setup" source scripts/setup.sh --with-browser
step "cargo fmt" cargo fmt --all -- --check
step "cargo clippy" cargo clippy --workspace --all-targets --locked -- -D warnings
step "cargo test" cargo test --workspace --locked
# `cohort-forger` (a patient with modified code) exists only with the relay's `forge` feature.
step "cargo clippy + test (forger)" sh -c 'cargo clippy -p cohort-relay --all-targets --features forge --locked -- -D warnings && cargo test -p cohort-relay --features forge --locked --test binaries forging'
step "fuzz targets compile (core/fuzz, relay/fuzz)" check_fuzz_targets
step "core no_std build (wasm32)" \
    cargo build -p cohort-core --target wasm32-unknown-unknown --no-default-features --locked
step "wasm-pack test core (node)" wasm-pack test --node --mode no-install core
step "wasm-pack test core (chromium)" \
    env WASM_BINDGEN_USE_BROWSER=1 wasm-pack test --headless --chrome --mode no-install core
step "wasm-pack test web (node)" wasm-pack test --node --mode no-install web
step "wasm-pack test web (chromium)" \
    env WASM_BINDGEN_USE_BROWSER=1 wasm-pack test --headless --chrome --mode no-install web
step "browser e2e" web/e2e/run.sh

echo "=== timings"
printf '%s\n' "${timings[@]}"
# Disk is the resource CI machines run out of first; show what this run used.
echo "target directory: $(du -sh "${CARGO_TARGET_DIR:-target}" 2>/dev/null | cut -f1)"
echo "ALL OK"
