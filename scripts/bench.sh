#!/usr/bin/env bash
# `make bench`: kanal's benchmark (see docs/bench.md). Runs `kanal bench`, which
# starts a private MariaDB, `kanal dev-kafka` processes and Redis on 127.0.0.1
# (random ports, temporary directories, stopped by pid), generates the seeded
# workload and prints the Markdown table; the JSON lands in bench/results/.
#
#   make bench                     # full: 1M rows, 3 rounds, 60s latency run, 1M-row transaction
#   BENCH_ARGS=--quick make bench  # 100k rows, under two minutes
#   BENCH_ARGS="--rows 300000 --runs 5 --cpuprofile /tmp/producer.pprof" make bench
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
KANAL=${KANAL_BIN:-bin/kanal}
[ -x "$KANAL" ] || { echo "bench: $KANAL not found: run \`make build\` (or \`make bench\`)" >&2; exit 1; }
mkdir -p bench/results
# shellcheck disable=SC2086 # BENCH_ARGS is a list of flags
exec "$KANAL" bench --out bench/results ${BENCH_ARGS:-} "$@"
