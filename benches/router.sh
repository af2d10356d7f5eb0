#!/usr/bin/env bash
# The built-in router's throughput and added latency, against the app direct
# and against HAProxy, with wrk, in one run on this machine.
#   benches/router.sh [duration=15s] [connections=64]
# Needs: wrk, haproxy (Debian packages). Builds canaryd in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-15s}; conns=${2:-64}
cargo build --release --quiet
bin=target/release/canaryd
work=$(mktemp -d); pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
app=$(free_port); router=$(free_port); hap=$(free_port); api=$(free_port)

CANARYD_LOG=warn $bin sample-app --version v1 --listen 127.0.0.1:$app --latency-p50 0ms --latency-p99 0ms & pids+=($!)
mkdir -p "$work/deploy"
cat > "$work/deploy/bench.yaml" <<YAML
service: bench
policy: http-red
prometheus: http://127.0.0.1:1
router: { kind: builtin, listen: "127.0.0.1:$router" }
stable: { version: v1, address: "127.0.0.1:$app" }
canary: { version: v1, address: "127.0.0.1:$app" }
deploy:
  steps:
    - deploy: 100%
YAML
CANARYD_LOG=error $bin run --deploy-dir "$work/deploy" --state :memory: --listen 127.0.0.1:$api & pids+=($!)
cat > "$work/haproxy.cfg" <<CFG
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
frontend web
  bind 127.0.0.1:$hap
  default_backend app
backend app
  http-reuse always
  server stable 127.0.0.1:$app weight 256
  server canary 127.0.0.1:$app weight 0
CFG
haproxy -db -f "$work/haproxy.cfg" & pids+=($!)
for p in $app $router $hap; do
  for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$p/" >/dev/null 2>&1 && break; sleep 0.1; done
done

run() { # name url
  local out; out=$(wrk -t1 -c"$conns" -d"$dur" --latency "$2")
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  printf '| %-22s | %10s | %8s | %8s |\n' "$1" "$rps" "$p50" "$p99"
}
echo "wrk -t1 -c$conns -d$dur --latency, $(nproc) cores, $(date -u +%F)"
echo "| target | requests/s | p50 | p99 |"
echo "|---|---|---|---|"
run "app direct" "http://127.0.0.1:$app/"
run "built-in router" "http://127.0.0.1:$router/"
run "HAProxy 2.6" "http://127.0.0.1:$hap/"
