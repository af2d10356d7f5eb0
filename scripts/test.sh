#!/usr/bin/env bash
# The README's test command (and CI's test step): installs what the tests
# start when it is missing (Prometheus, HAProxy, Chromium; Debian/Ubuntu, with
# sudo when not root), runs every test binary without stopping at the first
# failing one, and ends with one line of totals. Exit 0 only when every test
# passed. Extra arguments go to `cargo test` (e.g. `--test import`).
set -euo pipefail
cd "$(dirname "$0")/.."

# The integration tests start a real Prometheus (Debian's 2.42), HAProxy and a
# headless Chromium (the dashboard tests); PROMETHEUS_BIN / CHROMIUM_BIN point
# the tests at another binary instead.
need=()
[ -n "${PROMETHEUS_BIN:-}" ] || command -v prometheus >/dev/null || need+=(prometheus)
command -v haproxy >/dev/null || need+=(haproxy)
[ -n "${CHROMIUM_BIN:-}" ] || command -v chromium >/dev/null || need+=(chromium)
if ((${#need[@]})); then
  echo "Installing what the tests start: ${need[*]} (apt-get)…"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# `sed -n 1p` reads to the end: `head -1` would make a chatty --version die
# of SIGPIPE, which pipefail turns into a failure.
"${PROMETHEUS_BIN:-prometheus}" --version 2>&1 | sed -n 1p
haproxy -v | sed -n 1p
"${CHROMIUM_BIN:-chromium}" --version 2>/dev/null | sed -n 1p || true

log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --locked --no-fail-fast "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

# One closing line with the totals over every test binary (cargo's own last
# lines are per binary, and a failing binary is easy to miss in the scroll).
awk -v status="$status" '
  /^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed/) p += $(i-1); if ($(i) ~ /^failed/) f += $(i-1) } }
  END {
    printf "tests: %d passed, %d failed", p, f
    if (status != 0 && f == 0) printf " (cargo exited with %d: a test binary did not build or crashed, see above)", status
    printf "\n"
    exit (status != 0 || f > 0 || p == 0)
  }' "$log"
