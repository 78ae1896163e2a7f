# orderflow: the two commands a fresh machine needs are `make run` and `make test`.
SHELL := /bin/bash
GO    ?= go
BIN   := bin/orderflow

# scripts/postgres.sh reuses a reachable DATABASE_URL or starts the project's
# own cluster, and prints the URL to use.
WITH_PG = url=$$(scripts/postgres.sh) && export DATABASE_URL="$$url" &&

.PHONY: all build run test bench fuzz vet postgres postgres-stop clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/orderflow

## run: bring up PostgreSQL and serve every role on ORDERFLOW_HTTP_ADDR (default :8080)
run: build
	@$(WITH_PG) exec ./$(BIN) serve

## test: every test, against the real PostgreSQL
test: vet
	@$(WITH_PG) $(GO) test -race -count=1 -timeout 20m ./...

vet:
	$(GO) vet ./...

## bench: the benchmarks; figures go to BENCHMARKS.md
bench:
	@$(WITH_PG) $(GO) run ./bench -out BENCHMARKS.md

## fuzz: run each fuzz target for FUZZTIME (default 30s)
FUZZTIME ?= 30s
fuzz:
	@for target in $$($(GO) test -list '^Fuzz' ./command/ | grep '^Fuzz'); do \
		echo "fuzzing $$target for $(FUZZTIME)"; \
		$(WITH_PG) $(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) ./command/ || exit 1; \
	done

postgres:
	@scripts/postgres.sh

postgres-stop:
	@scripts/postgres.sh stop

clean:
	rm -rf bin
