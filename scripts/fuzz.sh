#!/usr/bin/env bash
# Fuzzes every target in fuzz/ for SECONDS each (default 20) with cargo-fuzz
# (libFuzzer); fails on the first crash, whose input is kept in
# fuzz/artifacts/TARGET/. Corpora live in fuzz/corpus/TARGET/ and grow from
# run to run; each run first seeds them with the shipped deploy files,
# policies, the validate examples and fuzz/seeds/.
#
#   scripts/fuzz.sh            # 20 s per target
#   scripts/fuzz.sh 600        # a long run: 10 minutes per target
#   FUZZ_TARGETS="policy counts" scripts/fuzz.sh 60
#
# cargo-fuzz needs nightly compiler flags; on a stable toolchain they are
# unlocked with RUSTC_BOOTSTRAP=1. Installs cargo-fuzz when missing. Targets
# are built optimised with debug assertions and overflow checks, without
# AddressSanitizer by default (canaryd forbids unsafe code; ASan halves the
# speed): FUZZ_SANITIZER=address scripts/fuzz.sh 600 turns it on.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-20}"
targets="${FUZZ_TARGETS:-deploy_yaml deploy_json policy prometheus_answer counts}"
sanitizer="${FUZZ_SANITIZER:-none}"
# FUZZ_DEV=1: unoptimised targets (a much shorter build, slower runs; CI's short form).
profile=""
[ "${FUZZ_DEV:-0}" = 1 ] && profile="--dev"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install --locked cargo-fuzz
fi
cargo fuzz --version

# Seeds: files users and Prometheus actually write (copied; never overwritten).
seed() {
    local dir="fuzz/corpus/$1"
    shift
    mkdir -p "$dir"
    local f
    for f in "$@"; do
        [ -f "$f" ] || continue
        cp -n "$f" "$dir/$(echo "$f" | tr '/' '_')"
    done
}
shopt -s nullglob globstar
seed deploy_yaml deploy/*.yaml deploy/**/*.yaml tests/validate/**/*.yaml
seed deploy_json fuzz/seeds/deploy_json/* # the shipped deploy files as JSON
seed policy policies/*.yaml
seed prometheus_answer fuzz/seeds/prometheus_answer/*
seed counts fuzz/seeds/counts/*

echo "== building the fuzz targets"
cargo fuzz build $profile --sanitizer "$sanitizer"

failed=0
for t in $targets; do
    echo "== $t: ${seconds}s"
    log="fuzz/target/$t.log"
    if cargo fuzz run $profile --sanitizer "$sanitizer" "$t" "fuzz/corpus/$t" -- -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
        runs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')
        rate=$(grep -E '^stat::average_exec_per_sec' "$log" | awk '{print $2}')
        echo "   ok: ${runs:-?} executions (${rate:-?}/s), 0 crashes, corpus $(find "fuzz/corpus/$t" -type f | wc -l) inputs"
    else
        failed=1
        echo "   CRASH (log: $log; input in fuzz/artifacts/$t/):"
        grep -E 'panicked at|ERROR: libFuzzer|SUMMARY|Test unit written' "$log" | head -n 8 || tail -n 20 "$log"
    fi
done
exit "$failed"
