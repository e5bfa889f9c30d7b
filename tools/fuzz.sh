#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for N seconds (default 45) and fails on any crash.
# Uses the stable toolchain with RUSTC_BOOTSTRAP=1 (no nightly here); installs cargo-fuzz if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-45}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1
targets=$(cargo fuzz list)
for t in $targets; do
  echo "fuzz: $t for ${seconds}s"
  mkdir -p "fuzz/corpus/$t"
  seeds="fuzz/seeds/$t"
  [ -d "$seeds" ] || seeds=""
  log="fuzz/$t.log"
  if ! cargo fuzz run "$t" "fuzz/corpus/$t" $seeds -- -max_total_time="$seconds" -rss_limit_mb=2048 >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "fuzz: $t FAILED (crash or build error; see above)" >&2
    exit 1
  fi
  grep -E '^#[0-9]+.*DONE|^Done' "$log" | tail -n 1 || true
done
