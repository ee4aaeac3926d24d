# stdpkt: network functions as Unix filters.
GO      ?= go
BIN     := bin
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
FUZZTIME ?= 15s

.PHONY: all build test unit fuzz fuzz-long lint bench demo deps clean

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

# test: everything a fresh machine needs, then every test, then a short fuzz run.
test: deps build lint unit fuzz

unit:
	$(GO) test -count=1 ./...

fuzz:
	$(GO) test ./framing -run '^$$' -fuzz '^FuzzReader$$' -fuzztime $(FUZZTIME)

fuzz-long:
	$(MAKE) fuzz FUZZTIME=10m

deps:
	@scripts/install-deps.sh

lint:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

bench: build
	@scripts/bench.sh

demo: build
	@scripts/demo.sh

clean:
	rm -rf $(BIN) bench/traces demo-out
