# rotord — see README.md. `make test` is the test command CI runs.
GO      ?= go
BIN     ?= bin
PKGS    := ./...
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)
# The build date is the commit's (or SOURCE_DATE_EPOCH's), so that a build is reproducible.
DATE    ?= $(shell if [ -n "$$SOURCE_DATE_EPOCH" ]; then date -u -d "@$$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ; else git log -1 --format=%cI 2>/dev/null; fi)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.date=$(DATE)

.PHONY: build test demo bench lint fuzz clean deb

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
# The shared journal through the real engine: 300 secrets due at once, 1
# and 3 instances, SQLite and PostgreSQL (prints a table of rotations per
# second and database round trips per rotation).
bench:
	$(GO) test -run '^$$' -bench . -skip SharedEngine -benchtime 20x -timeout 20m ./store/ ./secretserver/ ./rotation/
	$(GO) test -run '^$$' -bench SharedEngine -benchtime 2x -timeout 20m ./store/
	$(GO) test -run '^$$' -bench HostKeyLookup ./sshexec/
	$(GO) test -run '^$$' -bench ChangeVerify -benchtime 4x -timeout 20m ./sshexec/
	$(GO) test -run '^$$' -bench RotateRootThroughSu -benchtime 2x -timeout 20m ./sshexec/

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

# The Debian package, bin/rotord_VERSION-1_ARCH.deb (see packaging/): the
# binary built for it (PIE, stripped, full RELRO), man pages and shell
# completions generated from the command definitions, a changelog for the
# version, staged in bin/deb (named in packaging/nfpm.yaml). nfpm is pinned
# in go.mod (tool directive).
DEB_VERSION ?= $(shell v=$$(git describe --tags --match 'v[0-9]*' 2>/dev/null) && echo "$${v\#v}" | sed 's/-/+/g' || echo "0.0~git$$(git log -1 --format=%cd --date=format:%Y%m%d).$$(git rev-parse --short HEAD)")
DEB_ARCH    ?= $(shell $(GO) env GOARCH)
DEB_STAGE   := bin/deb
deb:
	rm -rf $(DEB_STAGE) && mkdir -p $(DEB_STAGE)/man
	CGO_LDFLAGS="-Wl,-z,relro,-z,now" $(GO) build -trimpath -buildmode=pie \
		-ldflags "$(LDFLAGS) -s -w -linkmode=external" -o $(DEB_STAGE)/rotord ./cmd/rotord
	$(DEB_STAGE)/rotord man $(DEB_STAGE)/man
	for sh in bash zsh fish; do $(DEB_STAGE)/rotord completion $$sh >$(DEB_STAGE)/rotord.$$sh; done
	printf 'rotord (%s-1) unstable; urgency=medium\n\n  * Package built from %s.\n\n -- rotord maintainers <rotord@example.org>  %s\n' \
		'$(DEB_VERSION)' "$$(git rev-parse --short HEAD)" "$$(git log -1 --format=%cD)" | gzip -9n >$(DEB_STAGE)/changelog.Debian.gz
	DEB_VERSION='$(DEB_VERSION)' DEB_ARCH=$(DEB_ARCH) \
		$(GO) tool nfpm package --config packaging/nfpm.yaml --packager deb --target $(BIN)/
