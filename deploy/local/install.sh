#!/usr/bin/env bash
# Installs what kanal's tests and demo need from Debian packages: the servers
# they run as private child processes (MariaDB, Redis, Postgres, RabbitMQ,
# memcached), kcat, chromium (headless, for the status page tests), and make
# plus a C toolchain (`go test -race` needs cgo). Safe to run again: when
# everything is present it only checks and exits.
#
# Services the packages start are not used (tests start their own instances
# on random ports), so their postinst scripts may do as they please.
set -euo pipefail

MIN_GO_MINOR=26

have_servers() {
	command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || return 1
	command -v mariadb-install-db >/dev/null 2>&1 || return 1
	command -v mariadb >/dev/null 2>&1 || return 1
	command -v redis-server >/dev/null 2>&1 || return 1
	command -v rabbitmq-server >/dev/null 2>&1 || [ -x /usr/sbin/rabbitmq-server ] || return 1
	command -v memcached >/dev/null 2>&1 || [ -x /usr/bin/memcached ] || return 1
	command -v kcat >/dev/null 2>&1 || return 1
	# Debian keeps the Postgres server binaries out of PATH.
	compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || return 1
	compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || return 1
	command -v make >/dev/null 2>&1 || return 1
	command -v gcc >/dev/null 2>&1 || return 1
	[ -e /usr/include/stdlib.h ] || return 1 # libc6-dev, for cgo
	# Apache Avro's own Python implementation: the independent decoder of the
	# Avro format tests.
	# Debian's own interpreter: a python3 earlier on PATH (pyenv) lacks it.
	/usr/bin/python3 -c 'import avro.schema, avro.io' >/dev/null 2>&1 || return 1
}

if have_servers; then
	echo "install.sh: mariadb, redis, postgres, rabbitmq, memcached, kcat, make, gcc and python3-avro already installed"
else
	if [ "$(id -u)" -eq 0 ]; then
		SUDO=()
	elif command -v sudo >/dev/null 2>&1; then
		SUDO=(sudo)
	else
		echo "install.sh: need root (or sudo) to install packages" >&2
		exit 1
	fi
	if ! command -v apt-get >/dev/null 2>&1; then
		echo "install.sh: apt-get not found; install mariadb-server redis-server postgresql rabbitmq-server memcached kcat make gcc python3-avro by hand" >&2
		exit 1
	fi
	echo "install.sh: installing mariadb-server redis-server postgresql rabbitmq-server memcached kcat make gcc python3-avro"
	"${SUDO[@]}" apt-get update
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y \
		mariadb-server mariadb-client redis-server postgresql rabbitmq-server memcached \
		kcat make gcc libc6-dev python3-avro
	if ! have_servers; then
		echo "install.sh: packages installed but binaries still missing" >&2
		exit 1
	fi
fi

# The status page tests load the page in a headless browser (chromedp drives
# Debian's chromium; chromium-driver ships the matching WebDriver).
have_browser() {
	command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || return 1
	command -v chromedriver >/dev/null 2>&1 || [ -x /usr/bin/chromedriver ] || return 1
}

if have_browser; then
	echo "install.sh: chromium already installed"
else
	if [ "$(id -u)" -eq 0 ]; then
		SUDO=()
	elif command -v sudo >/dev/null 2>&1; then
		SUDO=(sudo)
	else
		echo "install.sh: need root (or sudo) to install chromium" >&2
		exit 1
	fi
	if ! command -v apt-get >/dev/null 2>&1; then
		echo "install.sh: apt-get not found; install chromium and chromium-driver by hand" >&2
		exit 1
	fi
	echo "install.sh: installing chromium chromium-driver"
	"${SUDO[@]}" apt-get update
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver
	if ! have_browser; then
		echo "install.sh: chromium installed but its binaries are missing" >&2
		exit 1
	fi
fi

# Go is not a Debian package here (Debian 12 ships 1.19); it is only checked.
GO=go
if ! command -v go >/dev/null 2>&1; then
	if [ -x /usr/local/go/bin/go ]; then
		GO=/usr/local/go/bin/go
	else
		echo "install.sh: Go not found: install Go >= 1.${MIN_GO_MINOR} from https://go.dev/dl/ into /usr/local/go and put /usr/local/go/bin on PATH" >&2
		exit 1
	fi
fi
ver=$("$GO" env GOVERSION) # e.g. go1.26.8
minor=$(echo "$ver" | sed -E 's/^go1\.([0-9]+).*/\1/')
if ! [ "$minor" -ge "$MIN_GO_MINOR" ] 2>/dev/null; then
	echo "install.sh: $ver is too old: kanal needs Go >= 1.${MIN_GO_MINOR} (https://go.dev/dl/)" >&2
	exit 1
fi
echo "install.sh: $ver ok"
