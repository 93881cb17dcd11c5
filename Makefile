# Plain entry points; CI runs `make test` through .ci/run.
GO ?= go
PKGS := ./...

.PHONY: all deps build tidy-check test test-short demo bench image fmt fmt-check vet clean

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

# The container image (deploy/Dockerfile): a static kanal on Alpine, run as an
# unprivileged user; docker-compose.yml and deploy/kubernetes use it. Needs a
# Docker engine (IMAGE_TOOL=podman works too); the build machines have none.
IMAGE ?= kanal:dev
IMAGE_TOOL ?= docker
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
image:
	@if ! command -v $(IMAGE_TOOL) >/dev/null 2>&1 || ! $(IMAGE_TOOL) info >/dev/null 2>&1; then \
		echo "make image: $(IMAGE_TOOL) is not usable here (not installed, or no engine running)."; \
		echo "On a machine with Docker, from the repository root:"; \
		echo "  $(IMAGE_TOOL) build -f deploy/Dockerfile --build-arg VERSION=$(VERSION) -t $(IMAGE) ."; \
		exit 1; \
	fi
	$(IMAGE_TOOL) build -f deploy/Dockerfile --build-arg VERSION=$(VERSION) -t $(IMAGE) .

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
