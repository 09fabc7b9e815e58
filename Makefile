# The README's test command is `make test`: formatting, vet, staticcheck, a
# `go mod tidy` check, and every test with the race detector, ending with the
# list of skipped tests. Set HANDOFF_TEST_DATABASE_URL to also run the
# PostgreSQL suites (CI does; with CI=true they fail instead of skipping).
GO ?= go
SHELL := /bin/bash
# Pinned tool versions, installed as Go modules into $(TOOLS).
STATICCHECK_VERSION := v0.8.2
TOOLS ?= $(CURDIR)/.tools

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
BUILD_DATE ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.buildDate=$(BUILD_DATE)

.PHONY: test fmt-check vet staticcheck tidy-check race build fuzz bench bench-relay bench-scale

test: fmt-check vet staticcheck tidy-check race

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

$(TOOLS)/staticcheck-$(STATICCHECK_VERSION):
	GOBIN=$(TOOLS) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	@touch $@

staticcheck: $(TOOLS)/staticcheck-$(STATICCHECK_VERSION)
	$(TOOLS)/staticcheck ./...

# go.mod and go.sum must be what `go mod tidy` makes of them.
tidy-check:
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run go mod tidy"; exit 1; }

race:
	@$(GO) build -o $(TOOLS)/testreport ./.ci/testreport
	@set -o pipefail; $(GO) test -race -count=1 -timeout 25m -json ./... | $(TOOLS)/testreport

# A static binary (no libc needed) with the version, commit and build date
# that `handoff version` prints.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o handoff ./cmd/handoff

bench:
	$(GO) test -run '^$$' -bench . -benchtime 3x ./...

# The bridge against a bare forwarding proxy on the same hops, same run:
# latency percentiles and CPU per message for each direction, on SQLite and
# (with HANDOFF_TEST_DATABASE_URL) PostgreSQL. HANDOFF_BENCH_SECONDS sets the
# load time per direction (default 10).
bench-relay:
	$(GO) test -run '^$$' -bench 'BenchmarkRelay' -benchtime 1x -timeout 30m ./cmd/handoff

# One process holding HANDOFF_BENCH_SESSIONS (default 10,000) idle live
# handoffs on PostgreSQL (HANDOFF_TEST_DATABASE_URL): CPU, RSS, goroutines,
# poll-tick cost per delivery mode, then handoffs opened per second.
bench-scale:
	$(GO) test -run '^$$' -bench 'BenchmarkScale' -benchtime 1x -timeout 60m ./cmd/handoff
