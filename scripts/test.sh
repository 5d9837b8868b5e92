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
# On CI every build is from scratch: incremental caches would only take disk (several GB).
if [ "${CI:-}" = "true" ]; then export CARGO_INCREMENTAL=0; fi
disk() { df -h --output=avail,used,target "${CARGO_TARGET_DIR:-target}" 2>/dev/null | tail -n 1 || true; }
rustup component list --installed 2>/dev/null | grep -qE '^(rustfmt|clippy)' || rustup component add rustfmt clippy

say "Test tools"
# The SIP bridge's tests (node/tests/sip.rs) play the callee's network with sipp, which
# Debian ships as the package sip-tester. The browser tests (node/tests/browser.rs) drive
# Debian's chromium with playwright-core from npm, which needs Node.js 20 or newer. Each
# Debian package is installed only if missing, with sudo unless already root.
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
missing=()
command -v sipp >/dev/null 2>&1 || missing+=(sip-tester)
# A gateway restarted with its clock moved back (node/tests/processes.rs) runs under faketime.
ls /usr/lib/*/faketime/libfaketimeMT.so.1 >/dev/null 2>&1 || missing+=(faketime)
# The multi-host tests (node/tests/hosts.rs) build a small internet of network namespaces:
# ip for namespaces and links, iptables for the home routers' NAT, python3 for the links
# with delay and loss (this kernel has no netem).
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
[ -x /usr/bin/python3 ] || missing+=(python3)
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
cargo fmt --manifest-path fuzz/Cargo.toml -- --check

say "Lints (cargo clippy -D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings

say "Tests"
echo "disk before (avail used mount): $(disk)"
cargo test --workspace --locked
echo "disk after the tests (avail used mount): $(disk)"

# Every decoder of network input has a cargo-fuzz target (fuzz/, a crate of its own with
# its own Cargo.lock). Each runs for FUZZ_SECONDS (default 20) from its committed seeds
# (fuzz/seeds/TARGET) and a scratch corpus under the target directory; a crash fails the
# suite and leaves the input in fuzz/artifacts/TARGET/. FUZZ_SECONDS=0 skips this. To fuzz
# longer, see README.md, "Fuzzing".
fuzz_seconds="${FUZZ_SECONDS:-20}"
if [ "$fuzz_seconds" -gt 0 ]; then
    say "Fuzzing (cargo fuzz, ${fuzz_seconds}s per target)"
    command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
    fuzz=(cargo fuzz)
    sanitizer=()
    if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
        # cargo fuzz passes rustc unstable flags (-Zsanitizer, sanitizer coverage): nightly.
        fuzz=(cargo +nightly fuzz)
    else
        # No nightly toolchain: stable rustc and cargo accept the same unstable flags when
        # RUSTC_BOOTSTRAP=1 (a compiler-bootstrap switch, used here for tests only). The
        # address sanitizer needs its runtime in the toolchain; without it, fuzz with no
        # sanitizer: panics, overflows (debug assertions) and timeouts are still caught.
        echo "no nightly toolchain: fuzzing on stable with RUSTC_BOOTSTRAP=1"
        export RUSTC_BOOTSTRAP=1
        if ! compgen -G "$(rustc --print sysroot)/lib/rustlib/*/lib/librustc*_rt.asan.a" >/dev/null; then
            echo "no address sanitizer runtime in this toolchain: fuzzing with --sanitizer none"
            sanitizer=(--sanitizer none)
        fi
    fi
    case "${CARGO_TARGET_DIR:-target}" in
        /*) fuzz_target_dir="$CARGO_TARGET_DIR/fuzz" ;;
        *) fuzz_target_dir="$(pwd)/${CARGO_TARGET_DIR:-target}/fuzz" ;;
    esac
    "${fuzz[@]}" build "${sanitizer[@]}" --target-dir "$fuzz_target_dir"
    for target in $("${fuzz[@]}" list); do
        corpus="$fuzz_target_dir/corpus/$target"
        log="$fuzz_target_dir/$target.log"
        mkdir -p "$corpus"
        # -timeout: one input taking over 10 s is a hang; -rss_limit_mb bounds memory.
        if ! "${fuzz[@]}" run "${sanitizer[@]}" --target-dir "$fuzz_target_dir" "$target" \
            "$corpus" "fuzz/seeds/$target" -- \
            -max_total_time="$fuzz_seconds" -timeout=10 -rss_limit_mb=2048 \
            -print_final_stats=1 >"$log" 2>&1; then
            tail -n 80 "$log"
            echo "fuzz target $target crashed: the input is in fuzz/artifacts/$target/" >&2
            exit 1
        fi
        runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")"
        echo "$target: ${runs:-?} inputs in ${fuzz_seconds}s, no crash"
    done
fi

say "All checks passed"
