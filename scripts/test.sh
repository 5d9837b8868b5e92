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

say "Formatting (cargo fmt --check)"
cargo fmt --all -- --check

say "Lints (cargo clippy -D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings

say "Tests"
cargo test --workspace --locked

say "All checks passed"
