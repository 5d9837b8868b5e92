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
# Debian ships as the package sip-tester. Installed only if `sipp` is not on PATH, with
# sudo unless already root.
if command -v sipp >/dev/null 2>&1; then
    echo "sipp: $(command -v sipp)"
else
    echo "sipp is missing: installing Debian's sip-tester"
    as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y sip-tester
fi

say "Formatting (cargo fmt --check)"
cargo fmt --all -- --check

say "Lints (cargo clippy -D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings

say "Tests"
cargo test --workspace --locked

say "All checks passed"
