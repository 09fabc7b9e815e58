# The README's test command is `make test`: formatting, vet, and every test
# with the race detector. Set HANDOFF_TEST_DATABASE_URL to also run the
# PostgreSQL suites (CI does; with CI=true they fail instead of skipping).
GO ?= go

.PHONY: test fmt-check vet race build fuzz bench bench-relay bench-scale

test: fmt-check vet race

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

race:
	$(GO) test -race -count=1 -timeout 25m ./...

build:
	$(GO) build -o handoff ./cmd/handoff

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
