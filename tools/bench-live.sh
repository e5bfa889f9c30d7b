#!/usr/bin/env bash
# Live-capture benchmark of the appliance (issue: appliance, live capture rates). Not a test.
#
# A generated capture of CALLS concurrent VLAN-tagged G.711 calls (default 1000 x 20 s, about
# 2 M frames) is replayed by tcpreplay into a veth pair between two private network namespaces,
# at stepped rates (tcpreplay --pps for each step, then --topspeed). On the receiving end
# `silentmon server` captures the veth with full flow tracking and SIP-sniffed agent bindings
# (one [[agent]] per called extension), and `tcpdump -w /dev/null` captures the same interface
# at the same time, one tcpdump per step (it prints the kernel's pcap_stats when it exits). The
# server's Prometheus metrics are scraped before and after each step. The result is a table and
# the highest rate with no drop at all, for silentmon (kernel, interface and pipeline drops) and
# for tcpdump, measured on the same feed in the same run. Per step the table also shows what the
# engine did with the frames (frames, RTP packets, RTP packets of SIP-bound agents, agents bound)
# and the 1-minute load average (the build machine may be shared: read drops next to it).
#
# Usage: tools/bench-live.sh [CALLS] [SECONDS]        (root: namespaces and packet capture)
#   STEPS="50000 100000 200000 300000 top"   rates in packets/s; "top" is --topspeed
#   BUFFER_MIB=64        kernel ring of silentmon (capture.buffer_mib) and of tcpdump (-B)
#   BENCH_DIR=DIR        work directory (capture, config, logs), default /tmp/silentmon-bench-live
#   SILENTMON=PATH       the silentmon binary to run as the server (default target/release/silentmon)
#   NO_SERVER=1          tcpdump only (checks the harness where `silentmon server` is missing)
# All traffic stays inside the two namespaces; the server listens on 127.0.0.1 of its namespace.
set -euo pipefail
cd "$(dirname "$0")/.."
calls=${1:-1000}
secs=${2:-20}
steps=${STEPS:-50000 100000 200000 300000 top}
buffer_mib=${BUFFER_MIB:-64}
work=${BENCH_DIR:-/tmp/silentmon-bench-live}
no_server=${NO_SERVER:-0}
silentmon=${SILENTMON:-target/release/silentmon}
metrics_port=19542
die() { echo "bench-live: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (network namespaces, packet capture)"
for tool in ip tcpreplay tcpdump curl awk; do
  command -v "$tool" > /dev/null || die "$tool is missing (tools/install-deps.sh --test)"
done
mkdir -p "$work"
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

echo "building release binaries ..." >&2
cargo build --release --locked -q --bin silentmon && cargo build --release --locked -q -p silentmon-capgen

cap="$work/calls-$calls-$secs.pcap"
truth="$work/truth-$calls-$secs.json"
if [ ! -s "$cap" ] || [ ! -s "$truth" ]; then
  echo "generating $cap ..." >&2
  target/release/capgen calls --calls "$calls" --duration "$secs" --encap vlan:100+ --codec pcmu \
    --seed 7 -o "$cap" --truth "$truth"
fi

# Namespaces and the veth pair (interface names are limited to 15 bytes).
id=$$
ns_tx="smbtx$id"
ns_rx="smbrx$id"
if_tx="smtx$id"
if_rx="smrx$id"
server_pid=""
tcpdump_pid=""
cleanup() {
  local rc=$?
  set +e
  [ -n "$tcpdump_pid" ] && kill "$tcpdump_pid" 2> /dev/null && wait "$tcpdump_pid" 2> /dev/null
  [ -n "$server_pid" ] && kill "$server_pid" 2> /dev/null && wait "$server_pid" 2> /dev/null
  ip netns del "$ns_tx" 2> /dev/null || true
  ip netns del "$ns_rx" 2> /dev/null || true
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ip netns add "$ns_tx"
ip netns add "$ns_rx"
ip link add "$if_tx" type veth peer name "$if_rx"
ip link set "$if_tx" netns "$ns_tx"
ip link set "$if_rx" netns "$ns_rx"
for ns in "$ns_tx" "$ns_rx"; do
  # No IPv6 autoconfiguration chatter on the feed: only the replayed frames cross the veth.
  ip netns exec "$ns" sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  ip netns exec "$ns" ip link set lo up
done
ip netns exec "$ns_tx" ip link set "$if_tx" up
ip netns exec "$ns_rx" ip link set "$if_rx" up promisc on
in_rx() { ip netns exec "$ns_rx" "$@"; }

# The server: capture on the veth, listeners on the namespace's loopback, plaintext (lab only),
# one agent per called extension (capgen: call i reaches agent 5001+i) so SIP sniffing binds
# every call to an agent.
cfg="$work/silentmon.toml"
{
  echo "[capture]"
  echo "interfaces = [\"$if_rx\"]"
  echo "buffer_mib = $buffer_mib"
  echo "[control]"
  echo "listen = \"127.0.0.1:42128\""
  echo "metrics_listen = \"127.0.0.1:$metrics_port\""
  echo "[monitor]"
  echo "listen = \"127.0.0.1:42328\""
  echo "[cluster]"
  echo "listen = \"127.0.0.1:42129\""
  echo "[security]"
  echo "insecure = true"
  echo "passwordless_logins = true"
  echo "certs_dir = \"$work/certs\""
  echo "audit_log = \"$work/audit.jsonl\""
  for ((i = 0; i < calls; i++)); do
    printf '[[agent]]\nid = "agent%d"\nextension = "%d"\n' $((5001 + i)) $((5001 + i))
  done
} > "$cfg"

scrape() { in_rx curl -s --max-time 2 "http://127.0.0.1:$metrics_port/metrics"; }
# metric TEXT NAME [INTERFACE]: the sample's value, or nothing when it is absent.
metric() {
  awk -v name="$2" -v ifc="${3:-}" '
    $0 ~ /^#/ { next }
    {
      split($1, a, "{")
      if (a[1] != name) next
      if (ifc != "" && index($1, "interface=\"" ifc "\"") == 0) next
      printf "%.0f\n", $NF; exit
    }' <<< "$1"
}

if [ "$no_server" != 1 ]; then
  in_rx "$silentmon" server --config "$cfg" --check-config \
    || die "silentmon server --check-config refused $cfg (is \`silentmon server\` built into this binary?)"
  ip netns exec "$ns_rx" "$silentmon" server --config "$cfg" > "$work/server.log" 2>&1 &
  server_pid=$!
  up=0
  for _ in $(seq 1 150); do # 30 s at most
    if ! kill -0 "$server_pid" 2> /dev/null; then
      server_pid=""
      echo "---- $work/server.log" >&2
      tail -n 30 "$work/server.log" >&2
      die "silentmon server exited during start-up (log above)"
    fi
    if scrape > /dev/null 2>&1; then up=1; break; fi
    sleep 0.2
  done
  if [ $up != 1 ]; then
    tail -n 30 "$work/server.log" >&2
    die "silentmon server did not serve metrics on 127.0.0.1:$metrics_port within 30 s"
  fi
  first=$(scrape)
  for name in silentmon_capture_received_total silentmon_capture_kernel_dropped_total \
    silentmon_capture_if_dropped_total silentmon_pipeline_dropped_total; do
    [ -n "$(metric "$first" "$name" "$if_rx")" ] || die "metrics lack $name{interface=\"$if_rx\"}"
  done
  for name in silentmon_engine_frames_total silentmon_engine_rtp_packets_total; do
    [ -n "$(metric "$first" "$name")" ] || die "metrics lack $name"
  done
  echo "silentmon server up (pid $server_pid), metrics on 127.0.0.1:$metrics_port in $ns_rx" >&2
fi

# Waits (10 s at most) until a value read by CMD stops changing for 1 s: the consumer drained.
settle() {
  local prev="" cur
  for _ in $(seq 1 10); do
    cur=$("$@")
    [ "$cur" = "$prev" ] && return 0
    prev=$cur
    sleep 1
  done
}
sm_received() { metric "$(scrape)" silentmon_capture_received_total "$if_rx"; }
packet_sockets() { in_rx cat /proc/net/packet | wc -l; }

results="$work/results.txt"
: > "$results"
for step in $steps; do
  if [ "$step" = top ]; then rate_args=(--topspeed); else rate_args=("--pps=$step"); fi
  # tcpdump for this step, with a ring as big as silentmon's; ready once its socket exists.
  before_sockets=$(packet_sockets)
  ip netns exec "$ns_rx" tcpdump -i "$if_rx" -nn -B $((buffer_mib * 1024)) -w /dev/null > "$work/tcpdump-$step.log" 2>&1 &
  tcpdump_pid=$!
  for _ in $(seq 1 100); do
    [ "$(packet_sockets)" -gt "$before_sockets" ] && grep -q "listening on" "$work/tcpdump-$step.log" && break
    kill -0 "$tcpdump_pid" 2> /dev/null || die "tcpdump failed: $(cat "$work/tcpdump-$step.log")"
    sleep 0.1
  done
  sleep 0.5
  if [ "$no_server" != 1 ]; then before=$(scrape); fi

  echo "step $step: tcpreplay ${rate_args[*]} ..." >&2
  ip netns exec "$ns_tx" tcpreplay -i "$if_tx" "${rate_args[@]}" "$cap" > "$work/tcpreplay-$step.log" 2>&1 \
    || die "tcpreplay failed: $(cat "$work/tcpreplay-$step.log")"
  sent=$(awk '/Actual:/ {print $2; exit}' "$work/tcpreplay-$step.log")
  pps=$(awk '/Rated:/ {for (i = 1; i < NF; i++) if ($(i + 1) ~ /^pps/) {printf "%.0f", $i; exit}}' "$work/tcpreplay-$step.log")
  failed=$(awk '/Failed packets:/ {print $3; exit}' "$work/tcpreplay-$step.log")

  if [ "$no_server" != 1 ]; then settle sm_received; after=$(scrape); else sleep 1; fi
  # SIGTERM, not SIGINT: a non-interactive shell starts background jobs with SIGINT ignored.
  # tcpdump prints its pcap_stats on either.
  kill -TERM "$tcpdump_pid"
  for _ in $(seq 1 100); do kill -0 "$tcpdump_pid" 2> /dev/null || break; sleep 0.1; done
  kill -0 "$tcpdump_pid" 2> /dev/null && die "tcpdump did not exit on SIGTERM"
  wait "$tcpdump_pid" || true
  tcpdump_pid=""
  td_recv=$(awk '/packets received by filter/ {print $1; exit}' "$work/tcpdump-$step.log")
  td_drop=$(awk '/packets dropped by kernel/ {print $1; exit}' "$work/tcpdump-$step.log")
  [ -n "$td_recv" ] && [ -n "$td_drop" ] || die "no counters in tcpdump's output: $(cat "$work/tcpdump-$step.log")"

  if [ "$no_server" != 1 ]; then
    d() { echo $(($(metric "$after" "$1" ${2:+"$2"}) - $(metric "$before" "$1" ${2:+"$2"}))); }
    sm_recv=$(d silentmon_capture_received_total "$if_rx")
    sm_kdrop=$(d silentmon_capture_kernel_dropped_total "$if_rx")
    sm_ifdrop=$(d silentmon_capture_if_dropped_total "$if_rx")
    sm_pdrop=$(d silentmon_pipeline_dropped_total "$if_rx")
    sm_frames=$(d silentmon_engine_frames_total)
    sm_rtp=$(d silentmon_engine_rtp_packets_total)
    # Proof of full tracking with SIP bindings: RTP classified as an agent's, and agents bound.
    sm_agent=$(d silentmon_agent_packets_total)
    sm_bind=$(metric "$after" silentmon_bindings)
  else
    sm_recv=- sm_kdrop=- sm_ifdrop=- sm_pdrop=- sm_frames=- sm_rtp=- sm_agent=- sm_bind=-
  fi
  # The 1-minute load average after the step: the machine may be shared.
  load=$(cut -d ' ' -f 1 /proc/loadavg)
  echo "$step $sent $pps ${failed:-0} $td_recv $td_drop $sm_recv $sm_kdrop $sm_ifdrop $sm_pdrop $sm_frames $sm_rtp $sm_agent $sm_bind $load" >> "$results"
done

echo
frames=$(awk 'NR == 1 {print $2}' "$results")
echo "capture: $cap ($frames frames, $calls calls x $secs s, VLAN 100+, PCMU); ring ${buffer_mib} MiB each"
echo "load average at the end: $(cut -d ' ' -f 1-3 /proc/loadavg) on $(nproc) cores"
echo "feed: tcpreplay in $ns_tx -> veth -> $if_rx in $ns_rx, captured at the same time by silentmon server and tcpdump -w /dev/null"
printf '%-7s %9s %9s %6s | %10s %8s | %10s %8s %8s %8s %10s %10s %10s %8s | %5s\n' \
  step sent "pps sent" failed "td recv" "td drop" "sm recv" "sm kdrop" "sm ifdrop" "sm pdrop" \
  "eng frames" "eng rtp" "agent pkts" bindings load1
while read -r step sent pps failed tr tdp sr sk si sp sf srtp sa sb ld; do
  printf '%-7s %9s %9s %6s | %10s %8s | %10s %8s %8s %8s %10s %10s %10s %8s | %5s\n' \
    "$step" "$sent" "$pps" "$failed" "$tr" "$tdp" "$sr" "$sk" "$si" "$sp" "$sf" "$srtp" "$sa" "$sb" "$ld"
done < "$results"

# The highest rate (tcpreplay's measured pps) of a step with nothing lost: every frame sent was
# received and none was dropped anywhere.
best() {
  awk -v who="$1" '
    who == "tcpdump" && $5 >= $2 && $6 == 0 && $3 > b { b = $3 }
    who == "silentmon" && $7 != "-" && $7 >= $2 && $8 == 0 && $9 == 0 && $10 == 0 && $3 > b { b = $3 }
    END { if (b) print b " pps"; else print "none of the steps" }' "$results"
}
# Drops under load can be sporadic (a lower step may lose what a higher one did not): also the
# highest rate up to which every step, in order of measured rate, was lossless.
all_below() {
  sort -n -k3 "$results" | awk -v who="$1" '
    { ok = (who == "tcpdump") ? ($5 >= $2 && $6 == 0) : ($7 != "-" && $7 >= $2 && $8 == 0 && $9 == 0 && $10 == 0) }
    !ok { exit }
    { b = $3 }
    END { if (b) print b " pps"; else print "none of the steps" }'
}
echo
echo "highest rate with 0 drops: tcpdump $(best tcpdump); every step lossless up to $(all_below tcpdump)"
if [ "$no_server" != 1 ]; then
  echo "highest rate with 0 drops: silentmon $(best silentmon); every step lossless up to $(all_below silentmon) (kernel, interface and pipeline drops all 0, received >= sent)"
fi
