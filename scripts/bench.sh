#!/usr/bin/env bash
# Runs one conclave-load scenario against a fresh conclave on this machine.
#   scripts/bench.sh messages [conclave-load flags...]
# The federation scenario starts two conclaves federating over loopback (a
# test CA made with openssl, names localhost:<federation port>, a closed
# circle of the two); the second one always uses SQLite. FEDERATED=1 does the
# same for another scenario (join-large-room: newcomers join from the second;
# e2ee: the user with many devices is on the second, the claimer on the first).
# DATABASE=postgres://... selects PostgreSQL (the database must be empty);
# DATABASE=postgres starts a throwaway PostgreSQL with production durability
# settings (scripts/postgres-test.sh); the default is SQLite in a temporary
# data directory. The server's log goes to $OUT_DIR/server.log, the result to
# $OUT_DIR/<scenario>.json. PORT picks the client port (default 18008);
# SERVER_FLAGS adds serve flags, e.g. "--admin-listen 127.0.0.1:9100" to
# profile the run (docs/benchmarks.md).
set -euo pipefail
scenario=${1:?usage: scripts/bench.sh <scenario> [conclave-load flags]}
shift
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
OUT_DIR=${OUT_DIR:-$work}
mkdir -p "$OUT_DIR"
port=${PORT:-18008}
cleanup() {
	if [ -n "${srv:-}" ]; then kill "$srv" 2>/dev/null || true; wait "$srv" 2>/dev/null || true; fi
	if [ -n "${peersrv:-}" ]; then kill "$peersrv" 2>/dev/null || true; wait "$peersrv" 2>/dev/null || true; fi
	if [ -n "${pgdsn:-}" ]; then "$root/scripts/postgres-test.sh" stop "$pgdsn"; fi
	rm -rf "$work/data"
}
trap cleanup EXIT
(cd "$root" && go build -trimpath -o "$work/conclave" ./cmd/conclave && go build -trimpath -o "$work/conclave-load" ./cmd/conclave-load)
db_flag=()
if [ "${DATABASE:-}" = postgres ]; then
	pgdsn=$(PG_DURABLE=1 "$root/scripts/postgres-test.sh" start)
	DATABASE=$pgdsn
	pgdir=${pgdsn##*host=}
	dbpid=$(head -1 "$pgdir/data/postmaster.pid")
fi
if [ -n "${DATABASE:-}" ]; then db_flag=(--database "$DATABASE"); fi
name=bench.local
fed_flags=()
if [ "$scenario" = federation ] || [ -n "${FEDERATED:-}" ]; then
	# Two servers in a closed circle on loopback, one test CA, names with
	# the federation ports; the second runs on SQLite in its own directory.
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/ca.key" -out "$work/ca.crt" \
		-subj /CN=bench-ca -days 1 -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
	fport=$((port + 1000)); pport=$((port + 1)); pfport=$((port + 1001))
	name=localhost:$fport; peer=localhost:$pfport
	fed_flags=(--tls-ca-cert "$work/ca.crt" --tls-ca-key "$work/ca.key" --federation-allow "$name,$peer" --federation-allow-private-addresses)
	"$work/conclave" serve --data-dir "$work/data/peer" --listen "127.0.0.1:$pport" --server-name "$peer" \
		--federation-listen "127.0.0.1:$pfport" "${fed_flags[@]}" --enable-registration --rate-limits=false ${SERVER_FLAGS_PEER:-} \
		>"$OUT_DIR/peer.log" 2>&1 &
	peersrv=$!
	fed_flags+=(--federation-listen "127.0.0.1:$fport")
fi
"$work/conclave" serve --data-dir "$work/data" --listen "127.0.0.1:$port" --server-name "$name" \
	--enable-registration --rate-limits=false "${db_flag[@]}" "${fed_flags[@]}" ${SERVER_FLAGS:-} >"$OUT_DIR/server.log" 2>&1 &
srv=$!
for p in $port ${pport:-}; do
	for _ in $(seq 100); do
		curl -fsS "http://127.0.0.1:$p/_matrix/client/versions" >/dev/null 2>&1 && break
		sleep 0.1
	done
done
"$work/conclave-load" --url "http://127.0.0.1:$port" --pid "$srv" ${dbpid:+--db-pid $dbpid} ${pport:+--peer-url http://127.0.0.1:$pport --peer-pid $peersrv} --out "$OUT_DIR/$scenario.json" \
	--label "conclave $(cd "$root" && git rev-parse --short HEAD) $([ -n "${DATABASE:-}" ] && echo postgres || echo sqlite)" "$@" "$scenario"
