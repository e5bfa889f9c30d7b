#!/usr/bin/env bash
# README's first command: install what is missing, build silentmon, run it on the embedded demo.
# Extra arguments go to `silentmon demo` (see `silentmon demo --help`): the appliance replays the
# demo call as live traffic, an embedded supervisor endpoint plays it (or records it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo build --release --locked --bin silentmon
exec target/release/silentmon demo "$@"
