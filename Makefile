# Conclave build entry points.
GO ?= go
COMPLEMENT_IMAGE ?= conclave-complement

.PHONY: build test complement-image

build:
	$(GO) build ./cmd/conclave

test:
	$(GO) test ./...

# Static Linux binary + FROM-scratch image for the Complement conformance suite.
# Run the suite with a Complement checkout kept outside this repo, e.g.
#   COMPLEMENT_BASE_IMAGE=conclave-complement go test -v ./tests/csapi   (in the checkout)
complement-image:
	CGO_ENABLED=0 GOOS=linux $(GO) build -trimpath -o build/complement/conclave ./cmd/conclave
	DOCKER_BUILDKIT=0 docker build -t $(COMPLEMENT_IMAGE) build/complement
