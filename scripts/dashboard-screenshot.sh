#!/usr/bin/env bash
# Renders the dashboard example's page with headless Chromium (Debian's package) to
# docs/dashboard.png, the picture in the README:
#   bash scripts/dashboard-screenshot.sh [seconds to let the workload run first, default 70]
# Installs chromium if /usr/bin/chromium is missing, runs
# `cargo run --release --example dashboard -- --port 0`, waits for the charts to fill, takes
# the screenshot, and stops the example.
set -euo pipefail
cd "$(dirname "$0")/.."

warmup="${1:-70}"
out="docs/dashboard.png"

if [[ ! -x /usr/bin/chromium ]]; then
  sudo=""
  if [[ "$(id -u)" -ne 0 ]]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium
fi

cargo build --quiet --release --example dashboard

log="$(mktemp)"
profile="$(mktemp -d)"
pid=""
cleanup() {
  if [[ -n "$pid" ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$log" "$profile"
}
trap cleanup EXIT

cargo run --quiet --release --example dashboard -- --port 0 >"$log" &
pid=$!

url=""
for _ in $(seq 1 100); do
  url="$(sed -n '1s/^dashboard: //p' "$log")"
  [[ -n "$url" ]] && break
  if ! kill -0 "$pid" 2>/dev/null; then echo "the example exited early" >&2; exit 1; fi
  sleep 0.1
done
[[ -n "$url" ]] || { echo "the example printed no address" >&2; exit 1; }
echo "dashboard at $url; letting the workload run ${warmup} s"
sleep "$warmup"

mkdir -p "$(dirname "$out")"
# The page polls once a second; the virtual time budget lets its first poll and render finish
# before the picture is taken.
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars \
  --user-data-dir="$profile" --no-first-run --disable-extensions \
  --window-size=1400,1580 --virtual-time-budget=5000 \
  --screenshot="$out" "${url}#span=60" 2>/dev/null
test -s "$out" || { echo "no screenshot at $out" >&2; exit 1; }
echo "wrote $out"
