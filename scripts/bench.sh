#!/usr/bin/env bash
# `make bench`: kanal's benchmark (see docs/bench.md). Runs bin/kanal-bench
# (cmd/kanal-bench) against bin/kanal; it starts a private MariaDB, `kanal
# dev-kafka` processes and Redis on 127.0.0.1 (random ports, temporary
# directories, stopped by pid), generates the seeded workload and prints the
# Markdown table; the JSON lands in bench/results/. KANAL_BIN and
# KANAL_BENCH_BIN override the two binaries.
#
#   make bench                     # full: 1M rows, 3 rounds, 60s latency run, 1M-row transaction
#   BENCH_ARGS=--quick make bench  # 100k rows, under two minutes
#   BENCH_ARGS="--rows 300000 --runs 5 --cpuprofile /tmp/producer.pprof" make bench
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
KANAL=${KANAL_BIN:-bin/kanal}
BENCH=${KANAL_BENCH_BIN:-bin/kanal-bench}
[ -x "$KANAL" ] || { echo "bench: $KANAL not found: run \`make build\` (or \`make bench\`)" >&2; exit 1; }
[ -x "$BENCH" ] || { echo "bench: $BENCH not found: run \`make bench\`" >&2; exit 1; }
mkdir -p bench/results
# shellcheck disable=SC2086 # BENCH_ARGS is a list of flags
exec "$BENCH" --kanal "$KANAL" --out bench/results ${BENCH_ARGS:-} "$@"
