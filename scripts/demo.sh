#!/usr/bin/env bash
# The one-command local demo: installs Prometheus if it is missing (Debian/
# Ubuntu), builds canaryd, and runs `canaryd demo`. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v prometheus >/dev/null; then
  echo "Installing Prometheus (Debian package)…"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
echo "Building canaryd (the first build takes a few minutes; cargo shows its progress below)…"
cargo build --locked
exec cargo run --locked --quiet -- demo "$@"
