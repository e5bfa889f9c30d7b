#!/usr/bin/env bash
# Whole-program benchmark of `silentmon flows` (issue: foundation, item 10). Not a test.
# Generates a large capture with capgen (default: 1000 concurrent VLAN-tagged G.711 calls x 60 s,
# about 6 M packets), then in one run times, on the same warm file:
#   1. a bare libpcap loop that only counts packets (tools/bench/pcapcount.c),
#   2. silentmon flows (full decap + SIP + RTP stats),
#   3. tshark -q -z rtp,streams (skip with NO_TSHARK=1),
# and prints packets/s, ratios and peak memory. Usage: tools/bench-flows.sh [CALLS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
calls=${1:-1000}
secs=${2:-60}
work=${BENCH_DIR:-/tmp/silentmon-bench}
mkdir -p "$work"
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

cargo build --release --locked -q --bin silentmon && cargo build --release --locked -q -p silentmon-capgen
cc -O2 -o "$work/pcapcount" tools/bench/pcapcount.c -lpcap

cap="$work/calls-$calls-$secs.pcap"
if [ ! -f "$cap" ]; then
  echo "generating $cap ..." >&2
  target/release/capgen calls --calls "$calls" --duration "$secs" --encap vlan:100+ --codec pcmu \
    --seed 7 -o "$cap" --truth "$work/truth-$calls-$secs.json"
fi
cat "$cap" > /dev/null # warm the page cache
packets=$("$work/pcapcount" "$cap" | awk '{print $1}')
size=$(stat -c %s "$cap")

# run NAME CMD...: best of 3 wall-clock seconds and the peak RSS (KiB) of that run.
run() {
  local name=$1; shift
  local best="" rss="" tf
  tf=$(mktemp)
  for _ in 1 2 3; do
    if ! /usr/bin/time -f '%e %M' -o "$tf" "$@" > /dev/null 2>&1; then
      echo "bench: $name failed: $*" >&2
      rm -f "$tf"
      return 1
    fi
    local t m
    read -r t m < "$tf"
    if [ -z "$best" ] || awk -v a="$t" -v b="$best" 'BEGIN{exit !(a < b)}'; then best=$t; rss=$m; fi
    [ "$name" = tshark ] && break # one tshark run is plenty
  done
  rm -f "$tf"
  echo "$name $best $rss"
}

results=$(mktemp)
run libpcap "$work/pcapcount" "$cap" >> "$results"
run silentmon target/release/silentmon flows -r "$cap" --json >> "$results"
if [ "${NO_TSHARK:-0}" != 1 ]; then
  run tshark tshark -n -r "$cap" -q -z rtp,streams >> "$results"
fi

streams=$((calls * 2))
echo
echo "capture: $cap ($packets packets, $((size / 1048576)) MiB, $calls calls, $streams RTP streams)"
printf '%-10s %10s %14s %12s\n' tool seconds packets/s "peak RSS MiB"
while read -r name t m; do
  printf '%-10s %10s %14.0f %12.1f\n' "$name" "$t" "$(awk -v p="$packets" -v t="$t" 'BEGIN{print p/t}')" "$(awk -v m="$m" 'BEGIN{print m/1024}')"
done < "$results"
lp=$(awk '$1=="libpcap"{print $2}' "$results")
sm=$(awk '$1=="silentmon"{print $2}' "$results")
smrss=$(awk '$1=="silentmon"{print $3}' "$results")
echo
echo "silentmon / bare libpcap throughput: $(awk -v a="$lp" -v b="$sm" 'BEGIN{printf "%.2f", a/b}')x (target >= 0.7x)"
ts=$(awk '$1=="tshark"{print $2}' "$results")
if [ -n "$ts" ]; then
  echo "silentmon / tshark throughput:       $(awk -v a="$ts" -v b="$sm" 'BEGIN{printf "%.1f", a/b}')x (target >= 30x)"
fi
echo "silentmon peak RSS:                  $(awk -v m="$smrss" 'BEGIN{printf "%.1f", m/1024}') MiB (up to 64 MiB of it the mapped file's window, released as read)"
rm -f "$results"
