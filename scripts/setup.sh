#!/usr/bin/env bash
# Installs what cohort's build and tests need, and nothing that is already there.
#
#   source scripts/setup.sh --no-browser   # what scripts/demo.sh does
#   source scripts/setup.sh --with-browser # what scripts/test.sh does (the default)
#   ./scripts/setup.sh [--no-browser]      # on its own
#
# Sourcing it also puts ~/.cargo/bin on the caller's PATH. Every step checks first and does
# nothing when the tool is already present at the right version, so a second run takes well
# under a second. Needs: Rust via rustup (cargo on PATH or in ~/.cargo/bin); for the browser
# part, apt (as root, or sudo) and node/npm.
#
# What it installs, and why these versions:
# - the wasm32-unknown-unknown Rust target (rustup);
# - wasm-pack 0.15.1 (cargo install --locked);
# - wasm-bindgen-cli at exactly the wasm-bindgen version in Cargo.lock: wasm-pack uses the CLI on
#   PATH only when the versions match, and with --mode no-install a mismatch is an error;
# - with the browser part: Chromium and chromedriver (Debian packages, same source package so
#   their versions match), and the npm packages of web/e2e (npm ci).
# Never Debian's binaryen: its wasm-opt 108 silently breaks wasm-bindgen 0.2.130 output (the
# web crate sets wasm-opt = false, so no wasm-opt is needed at all).

cohort_setup() {
    local browser=1 arg
    for arg in "$@"; do
        case "$arg" in
            --no-browser) browser=0 ;;
            --with-browser) browser=1 ;;
            *)
                echo "setup.sh: unknown argument '$arg' (use --no-browser or --with-browser)" >&2
                return 2
                ;;
        esac
    done

    local root
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

    case ":$PATH:" in
        *":$HOME/.cargo/bin:"*) ;;
        *) export PATH="$HOME/.cargo/bin:$PATH" ;;
    esac
    if ! command -v cargo >/dev/null || ! command -v rustup >/dev/null; then
        echo "setup.sh: cargo and rustup are needed; install Rust with rustup first (https://rustup.rs)" >&2
        return 1
    fi

    # 1. The wasm target.
    if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
        echo "setup: rustup target add wasm32-unknown-unknown"
        rustup target add wasm32-unknown-unknown
    fi

    # 2. wasm-pack.
    local wasm_pack_version=0.15.1
    if [ "$(wasm-pack --version 2>/dev/null)" != "wasm-pack $wasm_pack_version" ]; then
        echo "setup: cargo install wasm-pack $wasm_pack_version (about 2 minutes)"
        cargo install wasm-pack --version "$wasm_pack_version" --locked
    fi

    # 3. wasm-bindgen-cli, pinned to the wasm-bindgen crate in Cargo.lock.
    local wbg
    wbg=$(awk '$0 == "name = \"wasm-bindgen\"" { getline; split($0, a, "\""); print a[2]; exit }' \
        "$root/Cargo.lock")
    if [ -z "$wbg" ]; then
        echo "setup.sh: no wasm-bindgen in Cargo.lock" >&2
        return 1
    fi
    if [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $wbg" ] ||
        [ "$(wasm-bindgen-test-runner --version 2>/dev/null)" != "wasm-bindgen-test-runner $wbg" ]; then
        echo "setup: cargo install wasm-bindgen-cli $wbg (about 2.5 minutes)"
        # --locked has failed on the registry mirror before (a locked dependency was missing);
        # fall back to a fresh resolution rather than fail.
        cargo install wasm-bindgen-cli --version "$wbg" --locked ||
            cargo install wasm-bindgen-cli --version "$wbg"
    fi

    # PostgreSQL and HAProxy for the store and cluster tests (they start their own throw-away
    # servers; the system services are not used).
    local pgsudo=""
    [ "$(id -u)" = 0 ] || pgsudo="sudo"
    if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! command -v haproxy >/dev/null; then
        echo "setup: apt-get install postgresql haproxy"
        $pgsudo apt-get update -q
        $pgsudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql haproxy
    fi

    [ "$browser" = 1 ] || return 0

    # 4. Chromium and chromedriver, from Debian (never binaryen).
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
        echo "setup: apt-get install chromium chromium-driver"
        $sudo apt-get update -q
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver
    fi
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        echo "setup: apt-get install nodejs npm (node 20 is what the e2e test was checked with)"
        $sudo apt-get update -q
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm
    fi

    # 5. The browser test's npm packages (playwright-core only; it uses the system Chromium).
    local e2e="$root/web/e2e"
    if [ ! -f "$e2e/package.json" ]; then
        echo "setup: WARNING: $e2e/package.json does not exist; the browser e2e step will fail" >&2
    elif [ ! -d "$e2e/node_modules" ] ||
        [ ! -f "$e2e/node_modules/.package-lock.json" ] ||
        [ "$e2e/package.json" -nt "$e2e/node_modules/.package-lock.json" ] ||
        { [ -f "$e2e/package-lock.json" ] &&
            [ "$e2e/package-lock.json" -nt "$e2e/node_modules/.package-lock.json" ]; }; then
        echo "setup: npm ci in web/e2e"
        (cd "$e2e" && npm ci --no-audit --no-fund)
    fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    cohort_setup "$@"
else
    cohort_setup "$@"
fi
