GO ?= go

.PHONY: build test test-go vet run

build:
	$(GO) build -trimpath -o conclave ./cmd/conclave

run: build
	./conclave serve

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1)

# Every test: unit, property, integration (in-process servers), real clients.
test: vet test-go

test-go:
	$(GO) test -count=1 -timeout 20m ./...
