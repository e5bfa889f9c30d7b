#!/usr/bin/env bash
# Soak, load and faults of the appliance (docs/RELIABILITY.md). Not a test, not in CI: it runs
# for MINUTES (30) and loads both cores. Builds the release binaries, then runs benches/soak.rs:
# `silentmon server` replaying CALLS (1000) looped calls with malformed frames mixed in, MONITORS
# (200) monitors attached and detached continuously with logins and logouts, one slow endpoint,
# the issue-13 attacks at a low rate, a row of RSS, descriptors, drops and ListAgents latency
# every minute; then the fault cases (kill -9 of an endpoint and of an appliance, SIGSTOP of an
# appliance, the SPAN interface deleted and re-created; root for the last).
#
# Usage: tools/soak.sh
#   MINUTES=30 CALLS=1000 MONITORS=200 SUPERVISORS=20 JUNK=20 ATTACK_SECS=10 REPORT_SECS=60
#   FAULTS=1 (0: soak only)  SOAK=1 (0: faults only)  SOAK_DIR=/tmp/silentmon-soak
# The report is printed and written to $SOAK_DIR/soak.md and faults.md.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
command -v mergecap >/dev/null || { echo "soak: mergecap missing (apt-get install wireshark-common)" >&2; exit 1; }
echo "building release binaries ..." >&2
cargo build --release --locked -q --bin silentmon
cargo build --release --locked -q -p silentmon-capgen
echo "load before: $(uptime)"
cargo bench --locked -q --bench soak
echo "load after: $(uptime)"
