#!/usr/bin/env bash
# Installs what the tests need, then runs the whole suite: formatting, clippy, unit and
# integration tests (tshark as the reference, real pcap files), and every fuzz target for a
# bounded time. Exits non-zero on the first failure. `.ci/run` calls this script.
#   FUZZ_SECONDS=N   seconds per fuzz target (default 45; 0 skips fuzzing for local runs)
set -euo pipefail
cd "$(dirname "$0")/.."
# Tests that need root, PulseAudio or a tool fail (rather than skip) wherever this runs.
export CI=true

bash tools/install-deps.sh --test
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test (workspace)"
# Includes the root-only tests (network namespaces, veth pairs): CI runs this as root.
cargo test --workspace --locked

fuzz_seconds=${FUZZ_SECONDS:-45}
if [ "$fuzz_seconds" != 0 ]; then
  step "fuzz targets, ${fuzz_seconds}s each"
  bash tools/fuzz.sh "$fuzz_seconds"
fi

step "all tests passed"
