#!/usr/bin/env bash
# Monitor forwarding and listen latency benchmark (issue: monitoring, item 9). Not a test.
# Builds the release binaries, then runs benches/monitor_latency.rs, which starts
# `silentmon server --replay CAPTURE --loop` on loopback (TLS 1.3, private CA), starts 1, 50 and 500
# monitors with one MonitorClient each and prints the forwarding delay (receive wall time minus
# capture_ts) p50/p99 per monitor count, then the listen latency through a real MediaSession
# (capture_ts to the device frames handed to the sink). See the bench's doc for the method.
#
# Usage: tools/bench-monitor.sh            (no root needed; loopback only)
#   CALLS=100 CALL_SECS=120 SUPERVISORS=5 COUNTS="1 50 500" SECONDS=10 WARMUP=3 LISTEN=10 LISTEN_SECONDS=30
#   LISTEN_BACKGROUND=-30 (dBFS between the markers instead of silence)
#   RTP_PHASE=random (each call its own packet phase) or aligned (all calls at once: worst case)
#   TLS=1 (default: TLS 1.3 with a private CA made for the run; TLS=0: the server runs --insecure)
#   CONNECTIONS=monitor (one monitor service connection per monitor) or supervisor (one per
#   supervisor: 1000 monitors need it, the service takes at most 512 connections)
#   BENCH_DIR=/tmp/silentmon-bench-monitor (capture, config, certs, server log)
#   SERVER_CPUS=0 CLIENT_CPUS=1: the servers on CPU 0, the bench's clients on CPU 1 (taskset),
#   so the clients' share of the delay is apart from the server's
#   FLOOR_SECONDS=5: first measure the host's wake-up floor that long (tools/wake-floor.py)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
echo "building release binaries ..." >&2
cargo build --release --locked -q --bin silentmon
cargo build --release --locked -q -p silentmon-capgen
echo "load before: $(uptime)"
# The host's own stalls, measured with nothing of ours running (see tools/wake-floor.py).
python3 tools/wake-floor.py "${FLOOR_SECONDS:-5}"
if [ -n "${CLIENT_CPUS:-}" ]; then
  cargo bench --locked -q --bench monitor_latency --no-run
  taskset -c "$CLIENT_CPUS" cargo bench --locked -q --bench monitor_latency
else
  cargo bench --locked -q --bench monitor_latency
fi
echo "load after: $(uptime)"
