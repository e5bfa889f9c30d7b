#!/usr/bin/env bash
# Regenerates testdata/ with the project's own capture generator (tools/capgen). Deterministic
# for the tone captures (fixed seeds); the demo's speech comes from espeak-ng and sox.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo build --release --locked -q -p silentmon-capgen
gen=target/release/capgen
out=testdata
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The demo: a mobile agent (5001, reached at +4915112345678) on VLAN 85, real speech both ways.
espeak-ng -v en-us -s 150 -w "$tmp/caller-speech.wav" \
  "Hello, this is Maria Schneider. I am calling about my order number four two seven one. It has not arrived yet, and I was told it would be delivered last Tuesday."
espeak-ng -v en-gb+m3 -s 145 -w "$tmp/agent-speech.wav" \
  "Thank you for calling, my name is Tom. I am sorry to hear that. Let me check order four two seven one for you. It is on its way and should arrive tomorrow morning."
# The caller speaks first, then the agent answers.
caller_len=$(soxi -D "$tmp/caller-speech.wav")
sox "$tmp/caller-speech.wav" -r 8000 -c 1 -b 16 "$tmp/caller.wav"
sox "$tmp/agent-speech.wav" -r 8000 -c 1 -b 16 "$tmp/agent.wav" pad "$(awk "BEGIN{print $caller_len + 0.5}")"
total=$(soxi -D "$tmp/agent.wav")
$gen calls --calls 1 --duration "$(awk "BEGIN{printf \"%d\", $total + 1.5}")" --encap vlan:85 \
  --codec pcmu --ptime 20 --wav "$tmp/caller.wav" --agent-wav "$tmp/agent.wav" \
  --agent-base 5001 --mobile-agent +4915112345678 --rtcp --seed 85 \
  -o "$out/demo-vlan85-mobile-agent.pcap" --truth "$out/demo-vlan85-mobile-agent.json" \
  --cti-scenario "$out/demo-vlan85-mobile-agent.cti.json"

# Four concurrent PCMA calls on VLANs 100-103, with loss, reordering, duplicates and an SSRC change.
$gen calls --calls 4 --duration 10 --encap vlan:100+ --codec pcma --loss 2 --reorder 1 \
  --duplicate 1 --ssrc-change-at 5 --jitter-ms 1 --rtcp --seed 4 \
  -o "$out/calls-4-vlan100-loss.pcap" --truth "$out/calls-4-vlan100-loss.json"

# Two QinQ-tagged PCMU calls with 30 ms packets.
$gen calls --calls 2 --duration 6 --encap qinq:300:20 --codec pcmu --ptime 30 --seed 2 \
  -o "$out/calls-2-qinq.pcap" --truth "$out/calls-2-qinq.json"

# Three untagged calls with 5 ms of capture-time jitter.
$gen calls --calls 3 --duration 6 --encap untagged --codec pcmu --jitter-ms 5 --seed 3 \
  -o "$out/calls-3-untagged-jitter.pcap" --truth "$out/calls-3-untagged-jitter.json"

# One agent's day on VLAN 100: a call to 5001 held for a consult to 5101, resumed, then the next call.
$gen agent-day --agent 5001 --consult 5101 --encap vlan:100 --seed 5001 \
  -o "$out/agent-5001-hold-consult-next.pcap" --truth "$out/agent-5001-hold-consult-next.json"

# vlantest's sample frames (five frames on VLAN 85, like the guide's VLANSamplePackets.cap).
$gen vlan-sample --vlan 85 --count 5 -o "$out/VLANSamplePackets.pcap"
ls -l "$out"
