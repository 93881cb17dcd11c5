#!/usr/bin/env bash
# kanal end to end on one machine: a private MariaDB, `kanal dev-kafka`, and
# `kanal produce` streaming a small shop workload into Kafka topics; then
# `kanal tail` and kcat show what arrived and the counts are compared.
#
# Run `make demo` (installs the servers, builds bin/kanal). Everything runs on
# 127.0.0.1 with random ports in a temp dir that is removed at exit.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
KANAL=${KANAL_BIN:-bin/kanal}
WORKLOAD_SECONDS=${WORKLOAD_SECONDS:-10}

export KANAL_DB_PASSWORD=kanal-secret

say() { printf '\n\033[1m== [%2ds] %s\033[0m\n' "$SECONDS" "$*"; }
die() {
	echo "demo: $*" >&2
	exit 1
}

for bin in mariadbd mariadb-install-db mariadb mariadb-binlog kcat; do
	command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ] ||
		die "$bin not found: run \`bash deploy/local/install.sh\` (or \`make demo\`, which runs it)"
done
[ -x "$KANAL" ] || die "$KANAL not found: run \`make build\` (or \`make demo\`)"
MARIADBD=$(command -v mariadbd || echo /usr/sbin/mariadbd)

TMP=$(mktemp -d "${TMPDIR:-/tmp}/kanal-demo.XXXXXX")
PIDS=()  # children in start order; stopped in reverse
NAMES=() # what each of PIDS is, for messages

# alive is false for exited and for zombie (exited, not yet reaped) children,
# which kill -0 would still report. One read of the status file: a process
# that is exiting can vanish between two.
alive() {
	local state
	state=$(awk '/^State:/ { print $2 }' "/proc/$1/status" 2>/dev/null) || return 1
	[ -n "$state" ] && [ "$state" != Z ]
}

stop_pid() {
	local pid=$1 name=$2 i
	kill -TERM "$pid" 2>/dev/null || true
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
	# Reverse order: the producer commits and exits before Kafka and the
	# source go away.
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		stop_pid "${PIDS[i]}" "${NAMES[i]}"
	done
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
	die "mariadb-install-db failed: $(tail -n 20 "$TMP/install-db.log")"
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
  user_id BIGINT,
  kind ENUM('order','referral','bonus'),
  amount DECIMAL(12,2),
  status VARCHAR(16),
  created_at DATETIME(6)
);
SQL
echo "MariaDB on 127.0.0.1:$DB_PORT (pid ${PIDS[0]}), datadir $DATADIR"

# ---------------------------------------------------------------- Kafka
say "starting kanal dev-kafka"
KAFKA_PORT=$(free_port)
BROKERS=127.0.0.1:$KAFKA_PORT
"$KANAL" dev-kafka --listen "$BROKERS" >"$TMP/dev-kafka.log" 2>&1 &
PIDS+=($!)
NAMES+=("kanal dev-kafka")
wait_until 30 dev-kafka grep -q "dev-kafka listening on" "$TMP/dev-kafka.log"
echo "dev-kafka on $BROKERS"

# ---------------------------------------------------------------- producer
say "starting kanal produce"
cat >"$TMP/kanal.yaml" <<YAML
source:
  name: demo
  addr: 127.0.0.1:$DB_PORT
  user: kanal
  password: \${KANAL_DB_PASSWORD}
  server_id: 1001
  start: earliest
kafka:
  brokers: ["$BROKERS"]
  topic_prefix: kanal
  partitions: 3
tables:
  include: ["shop.*"]
YAML
cat "$TMP/kanal.yaml"
"$KANAL" produce --config "$TMP/kanal.yaml" >"$TMP/produce.log" 2>&1 &
PRODUCE_PID=$!
PIDS+=("$PRODUCE_PID")
NAMES+=("kanal produce")
sleep 1
alive "$PRODUCE_PID" || die "kanal produce exited: $(tail -n 20 "$TMP/produce.log")"

# ---------------------------------------------------------------- workload
say "workload: ${WORKLOAD_SECONDS}s of inserts and updates, a delete, a primary-key change, a 2,000-row transaction"
deleted='' pk_changed='' big_done=''
delete_one() {
	sql shop -e "DELETE FROM earnings ORDER BY id LIMIT 1"
	deleted=1
}
change_pk() { # kanal emits a delete of the old key and a create of the new one
	sql shop -e "UPDATE users SET id = id + 1000000 ORDER BY id LIMIT 1"
	pk_changed=1
}
big_transaction() { # one binlog transaction, one Kafka transaction
	sql shop <<SQL
START TRANSACTION;
INSERT INTO earnings (user_id, kind, amount, status, created_at)
  SELECT 1 + seq % 20, 'bonus', 0.50, 'paid', NOW(6) FROM seq_1_to_2000;
COMMIT;
SQL
	big_done=1
}
end=$((SECONDS + WORKLOAD_SECONDS))
round=0
while ((SECONDS < end)); do
	round=$((round + 1))
	sql shop <<SQL
INSERT INTO users (name, email, balance, created_at) VALUES
  ('user-$round-a', 'a$round@example.com', 0, NOW(3)),
  ('user-$round-b', 'b$round@example.com', 0, NOW(3)),
  ('user-$round-c', 'c$round@example.com', 0, NOW(3));
INSERT INTO earnings (user_id, kind, amount, status, created_at)
  SELECT id, ELT(1 + id % 3, 'order', 'referral', 'bonus'), ROUND(1 + RAND() * 99, 2), 'pending', NOW(6)
  FROM users ORDER BY RAND() LIMIT 4;
UPDATE earnings SET status = 'paid' WHERE status = 'pending' ORDER BY id LIMIT 2;
UPDATE users u SET balance = (SELECT COALESCE(SUM(amount), 0) FROM earnings e WHERE e.user_id = u.id AND e.status = 'paid')
  WHERE u.id IN (SELECT user_id FROM earnings WHERE status = 'paid');
SQL
	case $round in
	3) delete_one ;;
	5) change_pk ;;
	7) big_transaction ;;
	esac
	sleep 0.2
done
# A short WORKLOAD_SECONDS still gets every kind of change.
[ -n "$deleted" ] || delete_one
[ -n "$pk_changed" ] || change_pk
[ -n "$big_done" ] || big_transaction
echo "$round rounds"

# ---------------------------------------------------------------- results
# The producer may still be writing the tail of the workload: wait until the
# topics hold as many live rows as the source (or give up after 30s).
live_keys() { # live_keys TOPIC: keys whose latest record is not a delete
	kcat -C -b "$BROKERS" -t "$1" -e -q -Z -X isolation.level=read_committed -f '%k\t%s\n' 2>/dev/null |
		awk -F '\t' '{ last[$1] = $2 } END { n = 0; for (k in last) if (last[k] != "NULL" && last[k] !~ /^\{"op":"d"/) n++; print n }'
}
records() { # records TOPIC: committed records, tombstones included
	kcat -C -b "$BROKERS" -t "$1" -e -q -X isolation.level=read_committed -f '%o\n' 2>/dev/null | wc -l
}
users_rows=$(sql shop -e "SELECT COUNT(*) FROM users")
earnings_rows=$(sql shop -e "SELECT COUNT(*) FROM earnings")
caught_up() {
	[ "$(live_keys kanal.shop.users)" = "$users_rows" ] && [ "$(live_keys kanal.shop.earnings)" = "$earnings_rows" ]
}
say "waiting for the producer to catch up"
for ((i = 0; i < 60; i++)); do
	caught_up && break
	alive "$PRODUCE_PID" || break
	sleep 0.5
done

say "kanal tail --from-beginning --max 20"
timeout 60 "$KANAL" tail --brokers "$BROKERS" --tables 'shop.*' --from-beginning --max 20 || echo "(tail exited with $?)"

say "counts"
# Row events as MariaDB logged them, decoded independently of kanal.
binlog_events() { # binlog_events TABLE
	mariadb-binlog --base64-output=decode-rows -v "$DATADIR"/binlog.[0-9]* 2>/dev/null |
		grep -cE "^### (INSERT INTO|UPDATE|DELETE FROM) \`shop\`\.\`$1\`" || true
}
printf '%-10s %12s %16s %18s %16s\n' table "source rows" "binlog row events" "records in topic" "live keys in topic"
ok=1
for t in users earnings; do
	rows=$(sql shop -e "SELECT COUNT(*) FROM $t")
	live=$(live_keys "kanal.shop.$t")
	printf '%-10s %12s %16s %18s %16s\n' "$t" "$rows" "$(binlog_events "$t")" "$(records "kanal.shop.$t")" "$live"
	[ "$rows" = "$live" ] || ok=
done
cat <<'TXT'
Topics get a delete plus a create for a primary-key change and a tombstone after
each delete, but they are compacted: older changes of a row go away over time, so
"records in topic" may be below "binlog row events". "live keys in topic" (keys
whose latest record is not a delete) must equal "source rows".
TXT
if [ -n "$ok" ]; then
	echo "OK: the topics' latest state matches the source table by table"
else
	echo "MISMATCH: topics do not match the source; see $TMP/produce.log" >&2
	exit 1
fi
