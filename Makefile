# Plain entry points; CI runs `make test` through .ci/run.
GO ?= go
PKGS := ./...

.PHONY: all deps build tidy-check test test-short demo bench fmt fmt-check vet clean

all: build

deps:
	bash deploy/local/install.sh

build:
	$(GO) build -o bin/kanal ./cmd/kanal

test: deps fmt-check vet tidy-check
	$(GO) test -race -count=1 -timeout 25m $(PKGS)

test-short:
	$(GO) test -short $(PKGS)

demo: deps build
	bash scripts/demo.sh

# The benchmark is its own binary: it starts servers through internal/testenv,
# which the shipped kanal must not link.
bench: deps build
	$(GO) build -o bin/kanal-bench ./cmd/kanal-bench
	bash scripts/bench.sh

fmt:
	gofmt -w .

fmt-check:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

# go.mod and go.sum must be exactly what the imports need.
tidy-check:
	@$(GO) mod tidy -diff >/dev/null || { echo "go.mod/go.sum are not tidy: run go mod tidy"; $(GO) mod tidy -diff; exit 1; }

vet:
	$(GO) vet $(PKGS)

# Also drops the data directory templates internal/testenv caches in $TMPDIR.
clean:
	rm -rf bin "$${TMPDIR:-/tmp}/kanal-testenv-$$(id -u)"
