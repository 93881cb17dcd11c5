#!/bin/sh
# Writes a random password for each secret of docker-compose.yml into
# deploy/compose/secrets/ (not in git), keeping those that exist: the data
# volumes were initialised with them. Run it once before `docker compose up`.
set -eu
dir=$(dirname "$0")/secrets
mkdir -p "$dir"
chmod 700 "$dir"
for name in mysql_root_password kanal_db_password redis_password postgres_password; do
	f=$dir/$name
	[ -s "$f" ] && continue
	# 24 random bytes as 48 hex digits: no character a shell, URL or DSN would
	# have to escape.
	od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$f"
	# Compose mounts secret files as they are, and the servers and kanal read
	# them as their own unprivileged users: the files are readable, the
	# directory (0700) keeps other users of this host out.
	chmod 644 "$f"
	echo "wrote $f"
done
