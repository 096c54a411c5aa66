# tollgate — build, test, benchmark.
# `make test` is the README's test command and what .ci/run calls.

GO        ?= go
BIN       ?= bin/tollgate
PKGS      ?= ./...
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
export TOLLGATE_SHARED ?= $(abspath ../shared)

.PHONY: all build test test-race lint bench conformance e2e fuzz clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/tollgate

# Every test, race detector on (the tee, queue and proxy are concurrent).
test:
	$(GO) test -race -count=1 -timeout 25m $(PKGS)

lint:
	$(GO) vet $(PKGS)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Side-by-side benchmarks; results land in bench/results/<name>-<date>.txt
# and a summary (QUICK=1 for a run of minutes; see docs/performance.md).
bench: build
	bash bench/run.sh

# OCI distribution-spec conformance through the proxy (embedded registry).
conformance: build
	bash bench/conformance.sh

# End-to-end suite against the real binary and ../shared.
e2e: build
	$(GO) test -count=1 -timeout 20m -tags e2e ./e2e/...

# Short fuzzing of every parser of untrusted bytes from the committed corpus.
fuzz:
	bash .ci/fuzz.sh

clean:
	rm -rf bin
