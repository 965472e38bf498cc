#!/usr/bin/env bash
# PostgreSQL for the test suite. The Go tests start their own throwaway
# server when they need one (internal/store/storetest/pgtest), so a bare
# `go test ./...` works wherever the server binaries are installed; this
# script installs them on a fresh machine and can start one shared server
# for a whole run (faster: one initdb instead of one per test package).
#
#   scripts/postgres-test.sh install   install Debian's postgresql if initdb is missing
#   scripts/postgres-test.sh check     exit 1 unless the server binaries are installed
#   scripts/postgres-test.sh start     start a throwaway server (Unix socket in a temp
#                                      dir, fsync off) and print its admin DSN;
#                                      use it as CONCLAVE_TEST_PG_DSN
#   scripts/postgres-test.sh stop DSN  stop that server and delete its directory
# PG_DURABLE=1 makes `start` keep PostgreSQL's durability settings (fsync,
# synchronous commit: what production runs), for benchmarks.
set -euo pipefail

bindir() {
	if command -v initdb >/dev/null 2>&1 && command -v postgres >/dev/null 2>&1; then
		dirname "$(readlink -f "$(command -v initdb)")"
		return
	fi
	local d
	d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -n | tail -1)
	[ -n "$d" ] && [ -x "$d/initdb" ] && echo "$d"
}

# as_pg runs a command as the postgres user when we are root (initdb and
# postgres refuse root).
as_pg() {
	if [ "$(id -u)" = 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

case "${1:-install}" in
install)
	if bindir >/dev/null; then
		echo "postgresql present: $(bindir)"
		exit 0
	fi
	SUDO=""
	if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -qq
	$SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null
	bindir >/dev/null || { echo "initdb still missing after installing postgresql" >&2; exit 1; }
	echo "postgresql installed: $(bindir)"
	;;
check)
	bindir >/dev/null
	;;
start)
	bin=$(bindir) || { echo "PostgreSQL server binaries not found (run: $0 install)" >&2; exit 1; }
	dir=$(mktemp -d "${TMPDIR:-/tmp}/conclave-pgshared-XXXXXX")
	if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi
	as_pg "$bin/initdb" -D "$dir/data" -A trust -U postgres --no-sync -E UTF8 --locale=C >"$dir/initdb.log" 2>&1 ||
		{ cat "$dir/initdb.log" >&2; exit 1; }
	opts="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
	if [ -n "${PG_DURABLE:-}" ]; then opts="-c shared_buffers=256MB"; fi
	as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start \
		-o "-k $dir -c listen_addresses= $opts -c max_connections=400" >/dev/null ||
		{ cat "$dir/server.log" >&2; exit 1; }
	echo "postgres://postgres@/postgres?host=$dir"
	;;
stop)
	dsn=${2:?usage: $0 stop DSN}
	dir=${dsn##*host=}
	dir=${dir%%&*}
	case "$dir" in
	*/conclave-pgshared-*) ;;
	*) echo "not a server started by this script: $dsn" >&2; exit 2 ;;
	esac
	bin=$(bindir)
	as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
	rm -rf "$dir"
	;;
*)
	echo "usage: $0 install|check|start|stop DSN" >&2
	exit 2
	;;
esac
