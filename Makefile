# rotord — see README.md. `make test` is the test command CI runs.
GO      ?= go
BIN     ?= bin
PKGS    := ./...
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)
# The build date is the commit's (or SOURCE_DATE_EPOCH's), so that a build is reproducible.
DATE    ?= $(shell if [ -n "$$SOURCE_DATE_EPOCH" ]; then date -u -d "@$$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ; else git log -1 --format=%cI 2>/dev/null; fi)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.date=$(DATE)

.PHONY: build test demo bench lint fuzz clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/...

test:
	$(GO) test -count=1 -timeout 20m $(PKGS)

demo: build
	$(BIN)/rotord-lab demo

# Benchmarks: the journal (history over a million rotations, journaling),
# the Secret Server client (requests per rotation), the engine's own cost
# per host, and change+verify on 50 real sshd hosts against a minimal
# client (needs root; prints a table with the ratio and CPU per host).
bench:
	$(GO) test -run '^$$' -bench . -benchtime 20x -timeout 20m ./store/ ./secretserver/ ./rotation/
	$(GO) test -run '^$$' -bench HostKeyLookup ./sshexec/
	$(GO) test -run '^$$' -bench ChangeVerify -benchtime 4x -timeout 20m ./sshexec/

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt: $$out"; exit 1; fi
	$(GO) vet $(PKGS)
	staticcheck $(PKGS)

FUZZTIME ?= 10s
fuzz:
	@set -e; $(GO) list -f '{{.ImportPath}} {{.Dir}}' $(PKGS) | while read -r pkg dir; do \
		for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/^func //'); do \
			echo "fuzz $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

clean:
	rm -rf $(BIN)
