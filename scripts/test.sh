#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the tests need if it is missing,
# then checks formatting and lints and runs every test of the workspace.
#
#   bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n==> %s\n' "$*"; }

say "Rust toolchain"
cargo --version
rustup component list --installed 2>/dev/null | grep -qE '^(rustfmt|clippy)' || rustup component add rustfmt clippy

say "Test tools"
# The SIP bridge's tests (node/tests/sip.rs) play the callee's network with sipp, which
# Debian ships as the package sip-tester. The browser tests (node/tests/browser.rs) drive
# Debian's chromium with playwright-core from npm, which needs Node.js 20 or newer. Each
# Debian package is installed only if missing, with sudo unless already root.
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
missing=()
command -v sipp >/dev/null 2>&1 || missing+=(sip-tester)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
fi
echo "sipp: $(command -v sipp)"
echo "chromium: $(/usr/bin/chromium --version 2>/dev/null | head -n 1)"
echo "node: $(node --version)"
node_major="$(node --version | sed -E 's/^v([0-9]+).*/\1/')"
if [ "$node_major" -lt 20 ]; then
    echo "playwright-core needs Node.js 20 or newer; this is $(node --version)" >&2
    exit 1
fi
# playwright-core at the version of the committed lock file; it downloads no browser.
(cd node/tests/browser && npm ci --no-audit --no-fund)

say "Formatting (cargo fmt --check)"
cargo fmt --all -- --check

say "Lints (cargo clippy -D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings

say "Tests"
cargo test --workspace --locked

say "All checks passed"
