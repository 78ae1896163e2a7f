# orderflow: the two commands a fresh machine needs are `make run` and `make test`.
SHELL := /bin/bash
GO    ?= go
BIN   := bin/orderflow

# scripts/postgres.sh and scripts/kafka.sh reuse a reachable DATABASE_URL /
# KAFKA_BROKERS or start the project's own server, and print the address.
WITH_PG    = url=$$(scripts/postgres.sh) && export DATABASE_URL="$$url" &&
WITH_KAFKA = brokers=$$(scripts/kafka.sh) && export KAFKA_BROKERS="$$brokers" &&
# The gateway of `make run` verifies tokens with ORDERFLOW_JWT_SECRET; unless
# it is set, scripts/jwt-secret.sh keeps a development one in .dev/jwt-secret.
WITH_SECRET = secret=$$(scripts/jwt-secret.sh) && export ORDERFLOW_JWT_SECRET="$$secret" &&

.PHONY: all build run test bench fuzz vet postgres postgres-stop kafka kafka-stop stop clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/orderflow

## run: bring up PostgreSQL and Kafka and serve every role behind the gateway on
## ORDERFLOW_HTTP_ADDR (default :8080); the roles' own API listens on
## ORDERFLOW_INTERNAL_ADDR (default 127.0.0.1:8081)
## Every role shares this machine: unless set, the projector's views take
## turns (ORDERFLOW_PROJECTOR_MAX_BATCHES=1), leaving the saga more of the
## cores (see README, "Projections").
run: build
	@$(WITH_PG) $(WITH_KAFKA) $(WITH_SECRET) export ORDERFLOW_PROJECTOR_MAX_BATCHES="$${ORDERFLOW_PROJECTOR_MAX_BATCHES:-1}" && \
	exec ./$(BIN) serve

## test: every test, against the real PostgreSQL and Kafka
test: vet
	@$(WITH_PG) $(WITH_KAFKA) $(GO) test -race -count=1 -timeout 25m ./...

vet:
	$(GO) vet ./...

## bench: the benchmarks; figures go to BENCHMARKS.md
bench:
	@$(WITH_PG) $(WITH_KAFKA) $(GO) run ./bench -out BENCHMARKS.md

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

kafka:
	@scripts/kafka.sh

kafka-stop:
	@scripts/kafka.sh stop

## stop: stop the project's PostgreSQL and Kafka
stop: kafka-stop postgres-stop

clean:
	rm -rf bin
