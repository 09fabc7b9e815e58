# The README's test command is `make test`: formatting, vet, and every test
# with the race detector. Set HANDOFF_TEST_DATABASE_URL to also run the
# PostgreSQL suites (CI does; with CI=true they fail instead of skipping).
GO ?= go

.PHONY: test fmt-check vet race build fuzz bench

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
