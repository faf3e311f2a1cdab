# The two commands first: `make dev` and `make test` (see README.md).
SHELL := /bin/bash
ACCOUNT ?= acct_1

.PHONY: dev test test-campaigns up down token bench lint fmt replay redrive cost

dev: ## Run the whole stack in the foreground; Ctrl-C stops it
	@scripts/stack.sh dev

test: ## Every test, with the services they need
	@scripts/test.sh

up: ## The dev stack in the background
	@scripts/stack.sh up && scripts/stack.sh banner

down: ## Stop what `make up` started
	@scripts/stack.sh down

token: ## A signed local bearer token: make token ACCOUNT=acct_1 (SCOPE=messages:admin for the admin routes)
	@cargo run --quiet -p devctl -- token $(ACCOUNT) $(if $(SCOPE),--scope '$(SCOPE)',)

redrive: ## Move DLQ messages back to the main queue (DRY_RUN=1 lists them)
	@source scripts/env.sh && source $$STACK_DIR/stack.env && \
	  cargo run --quiet -p devctl -- redrive $(if $(DRY_RUN),--dry-run,)

replay: ## Move the producer's outbox (accepted while SQS was down) to the queue
	@source scripts/env.sh && source $$STACK_DIR/stack.env && \
	  cargo run --quiet -p devctl -- replay

test-campaigns: ## The long campaign stack test (a full call of 1,000 recipient ids, cancelled midway), against a stack `make up` started
	@source scripts/env.sh && source $$STACK_DIR/stack.env && \
	  cargo test -p integration-tests --test stack -- --ignored campaign --nocapture

bench: ## Benchmarks: target/bench/report.{json,md}
	@scripts/bench.sh

cost: ## Monthly AWS bill per Profile from template.yaml: make cost [VOLUME=43200] [ACCOUNTS=50] [BACKLOGGED=0.1] [CAMPAIGNS=0.9] [PROFILE=small]
	@scripts/cost.sh $(if $(VOLUME),--volume $(VOLUME),) $(if $(ACCOUNTS),--accounts $(ACCOUNTS),) \
	  $(if $(BACKLOGGED),--backlogged $(BACKLOGGED),) $(if $(CAMPAIGNS),--campaigns $(CAMPAIGNS),) \
	  $(if $(PROFILE),--profile $(PROFILE),)

lint: ## fmt check and clippy
	cargo fmt --all -- --check
	cargo fmt --manifest-path fuzz/Cargo.toml -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

.PHONY: fuzz
FUZZ_SECONDS ?= 60
fuzz: ## Fuzz the parsers and the producer's handler: make fuzz FUZZ_SECONDS=600 [FUZZ_TARGETS=queue_message]
	@FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh $(FUZZ_TARGETS)

.PHONY: sim
SCENARIO ?=
SEED ?=
# Optimised, without the release profile's size settings (fat LTO, opt-level z)
# that only the Lambda zips need.
SIM_PROFILE_ENV := CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_OPT_LEVEL=3 CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
sim: ## Deterministic simulation: target/sim/report.{json,md} [SCENARIO=name[,name]] [SEED=n]
	@$(SIM_PROFILE_ENV) cargo run --release --quiet -p sim -- \
	  $(if $(SCENARIO),--scenario $(SCENARIO),) $(if $(SEED),--seed $(SEED),)

.PHONY: sim-vs-bench
BENCH_REPORT ?= target/bench/report.json
sim-vs-bench: ## The simulation against the real stack: bench-accuracy vs make bench's accuracy run [BENCH_REPORT=target/bench/report.json]
	@$(SIM_PROFILE_ENV) cargo run --release --quiet -p sim -- --compare-bench $(BENCH_REPORT) \
	  $(if $(SEED),--seed $(SEED),)

.PHONY: failover
failover: ## Redis failover to a replica that lost 1 s of writes, without and with REDIS_WAIT_REPLICAS: target/failover/report-{async,wait}.json
	@scripts/failover.sh test

.PHONY: test-cluster
test-cluster: ## The functions on a local Redis Cluster (3 primaries + 3 replicas): the adapters' Redis tests, every stack test, and a primary killed mid-delivery (target/cluster-failover/report.json)
	@scripts/test-cluster.sh long
