# stdpkt: network functions as Unix filters.
GO      ?= go
BIN     := bin
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# FUZZTIME is how much each fuzz target runs: 5000 inputs by default in make test, 2m in
# make fuzz. make test counts inputs rather than seconds: with a duration, Go 1.26's fuzz
# coordinator can report its own deadline as a failure ("context deadline exceeded", no
# failing input) when a loaded machine delays a worker at the end (golang/go#75804, fixed in
# Go 1.27); a count has no deadline to race.
FUZZTIME ?=

.PHONY: all build test unit fuzz fuzz-short lint bench demo deps clean

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

# test: everything a fresh machine needs, then every test, then every fuzz target briefly.
test: deps build lint unit fuzz-short

unit:
	$(GO) test -count=1 ./...

# fuzz_all runs every Fuzz target of every package for $(1) each. go test -fuzz takes one
# target of one package, so it loops: the packages whose tests define a Fuzz function, and
# their targets as go test -list names them, so a target added later needs no edit here.
fuzz_all = set -e; \
	for pkg in $$(grep -rlE --include='*_test.go' '^func Fuzz[A-Z0-9_]' . | grep -v /testdata/ | xargs -r -n1 dirname | sort -u); do \
	  list=$$($(GO) test -list '^Fuzz' "$$pkg"); \
	  for t in $$(echo "$$list" | grep '^Fuzz'); do \
	    echo "fuzz: $$pkg $$t for $(1)"; \
	    $(GO) test "$$pkg" -run '^$$' -fuzz "^$$t\$$" -fuzztime $(1); \
	  done; \
	done

fuzz-short:
	@$(call fuzz_all,$(or $(FUZZTIME),5000x))

fuzz:
	@$(call fuzz_all,$(or $(FUZZTIME),2m))

deps:
	@scripts/install-deps.sh

lint:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

bench: build
	@scripts/bench.sh
	@echo
	@echo "Live chain between network namespaces (root only): TCP throughput and ping, next to a kernel router:"
	@STDPKT_BIN=$(BIN) scripts/bench-live.sh || echo "(bench-live.sh failed)"

demo: build
	@scripts/demo.sh

clean:
	rm -rf $(BIN) bench/traces demo-out
