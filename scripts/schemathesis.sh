#!/usr/bin/env bash
# API fuzzing: Schemathesis against the OpenAPI document canaryd serves
# (/api/v1/openapi.json), every check on, once without the API token and once
# with it. Starts two sample apps and `canaryd run` on a temp deploy directory
# holding one rollout (no Prometheus: its gates are inconclusive), and stops
# every process it started, whatever happens.
#
#   scripts/schemathesis.sh           short run (about a minute): 30 cases per operation
#   scripts/schemathesis.sh --long    long run: 500 cases per operation, stateful phase included
#
# Schemathesis is installed in target/schemathesis-venv on first use (PyPI).
# CANARYD_BIN=path fuzzes that binary instead of building this checkout.
# /api/v1/events is left out: an event stream never ends, so every call
# would time out; tests/api_access.rs covers it.
set -euo pipefail

examples=30
phases=examples,coverage,fuzzing
seed=(--seed 20261130) # the short run is reproducible; the long one explores
case "${1:-}" in
  --long) examples=500; phases=examples,coverage,fuzzing,stateful; seed=() ;;
  "") ;;
  *) echo "usage: $0 [--long]" >&2; exit 2 ;;
esac

cd "$(dirname "$0")/.."
root=$(pwd)
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

venv="$root/target/schemathesis-venv"
if [[ ! -x "$venv/bin/schemathesis" ]]; then
  echo "installing schemathesis in $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet 'schemathesis>=4,<5'
fi

if [[ -n "${CANARYD_BIN:-}" ]]; then
  canaryd=$CANARYD_BIN # another build, e.g. an older commit's, to compare
else
  echo "building canaryd"
  cargo build --quiet --bin canaryd
  canaryd="$root/target/debug/canaryd"
fi

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
stable=127.0.0.1:$(free_port)
canary=127.0.0.1:$(free_port)
router=127.0.0.1:$(free_port)
api=127.0.0.1:$(free_port)
token=$(python3 -c 'import secrets; print(secrets.token_hex(16))')

"$canaryd" sample-app --version v1 --listen "$stable" >"$work/v1.log" 2>&1 &
pids+=($!)
"$canaryd" sample-app --version v2 --listen "$canary" >"$work/v2.log" 2>&1 &
pids+=($!)

mkdir -p "$work/deploy"
cat >"$work/deploy/checkout.yaml" <<EOF
service: checkout
policy: http-red
router: { kind: builtin, listen: "$router" }
stable: { version: v1, address: "$stable" }
canary: { version: v2, address: "$canary" }
deploy:
  strategy: canary
  steps:
    - deploy: 10%
      duration: 10m
      metrics:
        - error_rate_less_than: 1%
    - deploy: 100%
  rollback:
    auto: true
    on:
      - error_rate_greater_than: 5%
  analysis:
    interval: 1s
EOF

# Port 9 (discard) on loopback: nothing answers, every gate is inconclusive.
CANARYD_API_TOKEN="$token" "$canaryd" run --deploy-dir "$work/deploy" --state "$work/state.db" \
  --listen "$api" --prometheus http://127.0.0.1:9 >"$work/canaryd.log" 2>&1 &
pids+=($!)

for _ in $(seq 1 100); do
  if curl -fsS "http://$api/readyz" >/dev/null 2>&1 \
    && curl -fsS "http://$api/api/v1/rollouts/default/checkout" >/dev/null 2>&1; then
    break
  fi
  sleep 0.1
done
curl -fsS "http://$api/api/v1/rollouts/default/checkout" >/dev/null || {
  echo "canaryd did not start:" >&2
  tail -20 "$work/canaryd.log" >&2
  exit 1
}

status=0
cd "$work" # schemathesis keeps its example database in ./.schemathesis
run() {
  local name=$1
  shift
  echo
  echo "== schemathesis: $name =="
  "$venv/bin/schemathesis" --config-file "$root/scripts/schemathesis.toml" \
    run "http://$api/api/v1/openapi.json" \
    --checks all --phases "$phases" --max-examples "$examples" \
    --exclude-path /api/v1/events --request-timeout 10 "${seed[@]}" \
    --report junit --report-junit-path "$root/target/schemathesis-$name.xml" \
    "$@" || status=1
}
run without-token
# The token as a header: schemathesis sanitizes it out of its own output.
run with-token -H "Authorization: Bearer $token"

if grep -q "panicked" "$work/canaryd.log"; then
  echo "canaryd panicked:" >&2
  grep -A5 "panicked" "$work/canaryd.log" >&2
  status=1
fi
exit $status
