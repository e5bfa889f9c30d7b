#!/usr/bin/env bash
# Installs what silentmon needs on Debian 12, and nothing that is already there.
#   tools/install-deps.sh          build + run dependencies
#   tools/install-deps.sh --test   also what the test suite needs (tshark, tcpreplay, sox, ...)
# Must run as root (or with sudo available). Idempotent and quiet when nothing is missing.
set -euo pipefail

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

# Build: libpcap (capture), libopus (Opus decode), libbcg729 (G.729, Annexes A and B), spandsp
# (G.722),
# ALSA headers (sound output), pkg-config.
pkgs=(pkg-config libpcap-dev libopus-dev libbcg729-dev libspandsp-dev libasound2-dev ca-certificates)
if [ $want_test = 1 ]; then
  # tshark: reference stream statistics; tcpreplay/tcpdump: replay and capture in namespaces;
  # sox + espeak-ng: reference audio; iproute2: namespaces and veth pairs.
  pkgs+=(tshark tcpreplay tcpdump sox espeak-ng iproute2 time openssl)
  # ffmpeg and opus-tools: the independent G.722 / G.729 and Opus decoders the codec tests
  # compare with.
  pkgs+=(ffmpeg opus-tools)
  # The SPAN lab (tests/common/lab.rs): baresip-core is the SIP user agent, procps gives sysctl.
  pkgs+=(baresip-core procps)
  # tests/lab_span.rs runs a tiny TCP listener with python3 inside a namespace.
  pkgs+=(python3)
  # The real-audio playout test (tests/playout_pulse.rs): a private PulseAudio with a null sink
  # (pulseaudio), parec/pactl (pulseaudio-utils), ALSA's pulse plugin so cpal's ALSA host plays
  # into it (libasound2-plugins).
  pkgs+=(pulseaudio pulseaudio-utils libasound2-plugins)
  # The supervisor page's tests (tests/supervisor_page.rs): a headless Chromium driven over
  # WebDriver by chromedriver.
  pkgs+=(chromium chromium-driver)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "install-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # tshark asks whether non-root users may capture; answer for it.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The Rust toolchain: the machine image provides rustup's cargo; make it visible.
if ! command -v cargo >/dev/null 2>&1; then
  if [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
  fi
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "install-deps: no cargo found. Install Rust >= 1.85 (rustup) and run again." >&2
  exit 1
fi
