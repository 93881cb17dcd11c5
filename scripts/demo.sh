#!/usr/bin/env bash
# kanal end to end on one machine: a private MariaDB with a `shop` schema (users
# and an earnings ledger) already holding PRELOAD_USERS users and PRELOAD_EARNINGS
# earnings (their binlogs purged, so only a snapshot can bring them over),
# `kanal dev-kafka`, Redis and Postgres; `kanal produce` starts with
# `source.start: snapshot` (backfills the existing rows, then streams the binlog)
# and `kanal consume` runs two consumer groups:
# redis-users (a Redis copy of shop.users) and earnings-summary (per-user and
# per-user-and-kind earnings summaries in Postgres, exactly once). A workload
# writes the ledger for WORKLOAD_SECONDS with a live progress line, then the
# demo verifies summary == ledger GROUP BY, Redis == users (pre-loaded rows
# included), runs `kanal verify` on both, and prints the measured freshness
# (commit in MariaDB → summary row updated in Postgres).
#
# Run `make demo` (installs the servers, builds bin/kanal). Everything runs on
# 127.0.0.1 with random ports in a temp dir that is removed at exit or Ctrl-C.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
KANAL=${KANAL_BIN:-bin/kanal}
WORKLOAD_SECONDS=${WORKLOAD_SECONDS:-30}
WORKLOAD_RATE=${WORKLOAD_RATE:-300} # transactions per second
PRELOAD_USERS=${PRELOAD_USERS:-2000}        # rows that exist before kanal starts:
PRELOAD_EARNINGS=${PRELOAD_EARNINGS:-100000} #   the initial snapshot brings them over
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}

export KANAL_DB_PASSWORD=kanal-secret

say() { printf '\n\033[1m== [%2ds] %s\033[0m\n' "$SECONDS" "$*"; }
die() {
	echo "demo: $*" >&2
	exit 1
}

PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$PG_BIN" ] && [ -x "$PG_BIN/initdb" ] ||
	die "Postgres not found: run \`bash deploy/local/install.sh\` (or \`make demo\`, which runs it)"
[ -x "$GO" ] || die "go not found (Go 1.26 at /usr/local/go)"
for bin in mariadbd mariadb-install-db mariadb mariadb-binlog kcat redis-server redis-cli psql; do
	command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ] ||
		die "$bin not found: run \`bash deploy/local/install.sh\` (or \`make demo\`, which runs it)"
done
[ -x "$KANAL" ] || die "$KANAL not found: run \`make build\` (or \`make demo\`)"
MARIADBD=$(command -v mariadbd || echo /usr/sbin/mariadbd)

TMP=$(mktemp -d "${TMPDIR:-/tmp}/kanal-demo.XXXXXX")
PIDS=()  # children in start order; stopped in reverse
NAMES=() # what each of PIDS is, for messages
SIGS=()  # the signal that stops each one cleanly

# alive is false for exited and for zombie (exited, not yet reaped) children,
# which kill -0 would still report. One read of the status file: a process
# that is exiting can vanish between two.
alive() {
	local state
	state=$(awk '/^State:/ { print $2 }' "/proc/$1/status" 2>/dev/null) || return 1
	[ -n "$state" ] && [ "$state" != Z ]
}

stop_pid() {
	local pid=$1 name=$2 sig=${3:-TERM} i
	kill -"$sig" "$pid" 2>/dev/null || true
	for ((i = 0; i < 150; i++)); do
		alive "$pid" || break
		sleep 0.1
	done
	if alive "$pid"; then
		echo "demo: $name (pid $pid) ignored SIGTERM for 15s; killing" >&2
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}

CLEANED=
cleanup() {
	local rc=$? i
	[ -n "$CLEANED" ] && return
	CLEANED=1
	trap - INT TERM
	if [ "$rc" -eq 130 ] || [ "$rc" -eq 143 ]; then
		echo "demo: interrupted; stopping" >&2
	elif [ "$rc" -ne 0 ]; then
		echo "demo: failed (exit $rc); last lines of the logs:" >&2
		for f in "$TMP"/*.log; do
			[ -f "$f" ] || continue
			echo "--- $f" >&2
			tail -n 15 "$f" >&2
		done
	fi
	# Reverse order: consumers and the producer commit and exit before Kafka,
	# the databases and the source go away.
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		stop_pid "${PIDS[i]}" "${NAMES[i]}" "${SIGS[i]}"
	done
	if [ -n "${DEMO_LOGS:-}" ]; then # keep the logs (DEMO_LOGS=dir)
		mkdir -p "$DEMO_LOGS" && cp "$TMP"/*.log "$TMP"/kanal.yaml "$DEMO_LOGS"/ 2>/dev/null || true
	fi
	rm -rf "$TMP"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# free_port picks a random port nobody answers on. Only the loopback is
# probed, and a tiny race with other processes is acceptable for a demo.
free_port() {
	local p i
	for ((i = 0; i < 100; i++)); do
		p=$((20000 + RANDOM % 30000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	die "no free port found"
}

# wait_until SECONDS WHAT CMD...: poll CMD until it succeeds.
wait_until() {
	local secs=$1 what=$2 i
	shift 2
	for ((i = 0; i < secs * 10; i++)); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	die "$what not ready after ${secs}s"
}

# ---------------------------------------------------------------- MariaDB
say "starting MariaDB"
DB_PORT=$(free_port)
DATADIR=$TMP/mariadb
root_flag=()
[ "$(id -u)" -eq 0 ] && root_flag=(--user=root)
mariadb-install-db --no-defaults --datadir="$DATADIR" --auth-root-authentication-method=normal \
	--skip-test-db --innodb-log-file-size=8M "${root_flag[@]}" >"$TMP/install-db.log" 2>&1 ||
	die "mariadb-install-db failed: $(cat "$TMP/install-db.log")"
# Same options as internal/testenv: ROW binlog with full images and metadata
# is what kanal needs from a source.
"$MARIADBD" --no-defaults --datadir="$DATADIR" --socket="$TMP/mysqld.sock" \
	--pid-file="$TMP/mariadb.pid" --port="$DB_PORT" --bind-address=127.0.0.1 \
	--skip-name-resolve --server-id=1 --log-bin="$DATADIR/binlog" --binlog-format=ROW \
	--binlog-row-image=FULL --binlog-row-metadata=FULL --character-set-server=utf8mb4 \
	--innodb-buffer-pool-size=32M --innodb-log-file-size=8M --innodb-use-native-aio=0 \
	--innodb-flush-log-at-trx-commit=2 --sync-binlog=0 --performance-schema=OFF \
	"${root_flag[@]}" >"$TMP/mariadb.log" 2>&1 &
PIDS+=($!)
NAMES+=(mariadbd)
SIGS+=(TERM)

sql() { mariadb --protocol=tcp -h127.0.0.1 -P"$DB_PORT" -uroot --batch --skip-column-names "$@"; }
wait_until 30 MariaDB sql -e 'SELECT 1'
sql <<SQL
CREATE USER 'kanal'@'%' IDENTIFIED BY '$KANAL_DB_PASSWORD';
CREATE USER 'kanal'@'127.0.0.1' IDENTIFIED BY '$KANAL_DB_PASSWORD';
GRANT ALL PRIVILEGES ON *.* TO 'kanal'@'%';
GRANT ALL PRIVILEGES ON *.* TO 'kanal'@'127.0.0.1';
CREATE DATABASE shop;
CREATE TABLE shop.users (
  id BIGINT PRIMARY KEY AUTO_INCREMENT,
  name VARCHAR(100),
  email VARCHAR(200),
  balance DECIMAL(12,2),
  created_at DATETIME(3)
);
CREATE TABLE shop.earnings (
  id BIGINT PRIMARY KEY AUTO_INCREMENT,
  user_id BIGINT NOT NULL,
  kind ENUM('order','referral','bonus','refund') NOT NULL,
  amount DECIMAL(12,2) NOT NULL,
  status VARCHAR(16) NOT NULL,
  created_at DATETIME(6) NOT NULL,
  KEY (user_id)
);
SQL
echo "MariaDB on 127.0.0.1:$DB_PORT (pid ${PIDS[0]}), datadir $DATADIR"

say "building the workload driver (scripts/demoload)"
"$GO" build -o "$TMP/demoload" ./scripts/demoload
say "pre-loading $PRELOAD_USERS users and $PRELOAD_EARNINGS earnings before kanal starts"
"$TMP/demoload" --preload "$PRELOAD_EARNINGS" --users "$PRELOAD_USERS" \
	--mysql "kanal:$KANAL_DB_PASSWORD@tcp(127.0.0.1:$DB_PORT)/shop"
# Their binlog goes away: only the snapshot can bring these rows to the targets.
sql -e "FLUSH BINARY LOGS; PURGE BINARY LOGS BEFORE NOW() + INTERVAL 1 HOUR"

# ---------------------------------------------------------------- Redis
say "starting Redis"
REDIS_PORT=$(free_port)
mkdir -p "$TMP/redis"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$TMP/redis" \
	--daemonize no >"$TMP/redis.log" 2>&1 &
PIDS+=($!)
NAMES+=(redis-server)
SIGS+=(TERM)
wait_until 30 Redis redis-cli -p "$REDIS_PORT" ping
echo "Redis on 127.0.0.1:$REDIS_PORT"

# ---------------------------------------------------------------- Postgres
say "starting Postgres"
PG_PORT=$(free_port)
PGDIR=$TMP/postgres
mkdir -p "$PGDIR"
as_pg=()
if [ "$(id -u)" -eq 0 ]; then # Postgres refuses to run as root
	chmod 755 "$TMP"
	chown postgres: "$PGDIR"
	as_pg=(setpriv --reuid=postgres --regid=postgres --init-groups --)
fi
"${as_pg[@]}" "$PG_BIN/initdb" -D "$PGDIR/data" -A trust -U postgres --no-sync --locale=C --encoding=UTF8 \
	>"$TMP/initdb.log" 2>&1 || die "initdb failed: $(tail -n 20 "$TMP/initdb.log")"
"${as_pg[@]}" "$PG_BIN/postgres" -D "$PGDIR/data" -p "$PG_PORT" -k "$PGDIR" -c listen_addresses=127.0.0.1 \
	-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=64MB \
	>"$TMP/postgres.log" 2>&1 &
PIDS+=($!)
NAMES+=(postgres)
SIGS+=(INT) # fast shutdown
wait_until 30 Postgres psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -c 'SELECT 1'
psql -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -c 'CREATE DATABASE kanal'
export DEMO_PG_DSN="postgres://postgres@127.0.0.1:$PG_PORT/kanal?sslmode=disable"
echo "Postgres on 127.0.0.1:$PG_PORT, database kanal"

# ---------------------------------------------------------------- Kafka
say "starting kanal dev-kafka"
KAFKA_PORT=$(free_port)
BROKERS=127.0.0.1:$KAFKA_PORT
"$KANAL" dev-kafka --listen "$BROKERS" >"$TMP/dev-kafka.log" 2>&1 &
PIDS+=($!)
NAMES+=("kanal dev-kafka")
SIGS+=(TERM)
wait_until 30 dev-kafka grep -q "dev-kafka listening on" "$TMP/dev-kafka.log"
echo "dev-kafka on $BROKERS"

# ---------------------------------------------------------------- config
METRICS_PORT=$(free_port)
cat >"$TMP/kanal.yaml" <<YAML
source:
  name: demo
  addr: 127.0.0.1:$DB_PORT
  user: kanal
  password: \${KANAL_DB_PASSWORD}
  server_id: 1001
  start: snapshot                  # backfill the existing rows first, then stream
kafka:
  brokers: ["$BROKERS"]
  topic_prefix: kanal
  partitions: 3
tables:
  include: ["shop.*"]
consumers:
  metrics_addr: 127.0.0.1:$METRICS_PORT
  metadata_max_age: 1s             # pick up the table topics as soon as the producer creates them
  handlers:
    - handler: redis               # group kanal-redis-users: a Redis copy of shop.users
      name: redis-users
      tables: ["shop.users"]
      options:
        instances:
          users: {addr: "127.0.0.1:$REDIS_PORT"}
        key_prefix: "kc:"
        tables:
          - match: shop.users
            instances: [users]
    - handler: aggregate           # group kanal-earnings-summary: summaries in Postgres
      name: earnings-summary
      tables: ["shop.earnings"]
      options:
        target:
          driver: postgres
          dsn: \${DEMO_PG_DSN}
        summaries:
          - table: user_earnings
            source: shop.earnings
            where: status = 'settled'
            group_by: [user_id]
            measures: ["count AS earnings", "sum(amount) AS total"]
          - table: user_kind_earnings
            source: shop.earnings
            where: status = 'settled'
            group_by: [user_id, kind]
            measures: ["count AS earnings", "sum(amount) AS total"]
YAML
cat "$TMP/kanal.yaml"
say "kanal config check --connect"
"$KANAL" config check --config "$TMP/kanal.yaml" --connect || die "kanal config check failed"

# ---------------------------------------------------------------- producer
say "starting kanal produce"
"$KANAL" produce --config "$TMP/kanal.yaml" >"$TMP/produce.log" 2>&1 &
PRODUCE_PID=$!
PIDS+=("$PRODUCE_PID")
NAMES+=("kanal produce")
SIGS+=(TERM)

# ---------------------------------------------------------------- consumers
say "starting kanal consume (groups kanal-redis-users and kanal-earnings-summary)"
"$KANAL" consume --config "$TMP/kanal.yaml" >"$TMP/consume.log" 2>&1 &
CONSUME_PID=$!
PIDS+=("$CONSUME_PID")
NAMES+=("kanal consume")
SIGS+=(TERM)
wait_until 30 "kanal consume metrics" bash -c "exec 3<>/dev/tcp/127.0.0.1/$METRICS_PORT"
alive "$PRODUCE_PID" || die "kanal produce exited: $(tail -n 20 "$TMP/produce.log")"
alive "$CONSUME_PID" || die "kanal consume exited: $(tail -n 20 "$TMP/consume.log")"

# ---------------------------------------------------------------- initial snapshot
say "kanal snapshot status --watch (the initial snapshot of the pre-loaded rows)"
timeout 300 "$KANAL" snapshot status --config "$TMP/kanal.yaml" --watch || die "initial snapshot failed: $(tail -n 20 "$TMP/produce.log")"

# ---------------------------------------------------------------- workload
say "workload: ${WORKLOAD_SECONDS}s of ledger writes, ~${WORKLOAD_RATE} transactions/s (4 writers: credits, settlements, reversals, re-assignments, deletes; user sign-ups and profile edits) + a freshness probe"
"$TMP/demoload" --seconds "$WORKLOAD_SECONDS" --rate "$WORKLOAD_RATE" \
	--mysql "kanal:$KANAL_DB_PASSWORD@tcp(127.0.0.1:$DB_PORT)/shop" \
	--pg "$DEMO_PG_DSN" --redis "127.0.0.1:$REDIS_PORT" \
	--metrics "http://127.0.0.1:$METRICS_PORT/metrics"
alive "$PRODUCE_PID" || die "kanal produce exited: $(tail -n 20 "$TMP/produce.log")"
alive "$CONSUME_PID" || die "kanal consume exited: $(tail -n 20 "$TMP/consume.log")"

say "kanal verify: every user in Redis and every summary row against the source"
for h in redis-users earnings-summary; do
	timeout 300 "$KANAL" verify --config "$TMP/kanal.yaml" --handler "$h" 2>"$TMP/verify-$h.log" ||
		die "kanal verify --handler $h: $(tail -n 20 "$TMP/verify-$h.log")"
done

say "a few summary rows (Postgres)"
psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d kanal -c \
	'SELECT user_id, kind, earnings, total, round(total / earnings, 2) AS avg FROM user_kind_earnings ORDER BY total DESC LIMIT 5'

say "kanal tail --from-beginning --max 5 (what the topics carry)"
timeout 60 "$KANAL" tail --brokers "$BROKERS" --tables 'shop.*' --from-beginning --max 5 | cut -c1-220 ||
	echo "(tail exited with $?)"

say "kanal status (the active producer, each group's lag and freshness per table)"
timeout 60 "$KANAL" status --config "$TMP/kanal.yaml" || die "kanal status failed"

say "done: everything verified; stopping and cleaning up"
