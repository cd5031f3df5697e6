# Gatehouse. `make run` serves the example policies; `make test` runs every test.
SHELL := /bin/bash
NODE_BIN := node_modules/.bin
# Node 24 LTS: the machine's node when it is new enough, else one installed from the npm
# registry into .tools/node (scripts/ensure-node.sh). Every recipe below, npm included, runs on it.
NODE_DIR := $(shell scripts/ensure-node.sh)
ifeq ($(NODE_DIR),)
$(error could not provide Node 24; see scripts/ensure-node.sh)
endif
export PATH := $(NODE_DIR):$(PATH)
TRUST_DOMAIN ?= shop.example
ARGS ?=

.PHONY: all install build run test test-unit test-integration validate-examples test-deps lint format docs bench clean

all: build

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

install: node_modules/.installed

build: install
	$(NODE_BIN)/tsc -p tsconfig.build.json

# Serves ./policies on loopback :9191 with the embedded in-process limiter (a demo, not exposed to
# the network; `serve` itself defaults to 0.0.0.0 for containers). Ctrl-C drains and exits.
LISTEN_ADDRESS ?= 127.0.0.1
run: build
	node dist/cli/main.js serve --policies policies --trust-domain $(TRUST_DOMAIN) --listen-address $(LISTEN_ADDRESS) $(ARGS)

# Programs the tests start for real (redis-server). Installed from Debian when missing.
test-deps:
	@scripts/ensure-test-deps.sh

# The example policies are validated and their policy tests (*.test.yaml) run, as users' CI would.
validate-examples: build
	node dist/cli/main.js validate policies
	node dist/cli/main.js test policies --coverage

# eslint (correctness rules and import boundaries) and prettier (formatting) over code and tests.
lint: install
	$(NODE_BIN)/eslint .
	$(NODE_BIN)/prettier --check src test bench k6

format: install
	$(NODE_BIN)/prettier --write src test bench k6

# The `serve` flag table of docs/cli.md, from src/cli/serve-options.ts.
docs: build
	node scripts/gen-cli-docs.js

test: build test-deps lint validate-examples
	$(NODE_BIN)/tsc -p tsconfig.json --noEmit
	scripts/run-jest.sh

clean:
	rm -rf dist node_modules coverage .tools

# Gatehouse against a bare grpc-js server, same machine, same run (see docs/performance.md).
bench: build
	@command -v h2load >/dev/null || { sudo=""; [ "$$(id -u)" -ne 0 ] && sudo=sudo; $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends nghttp2-client; }
	@scripts/ensure-test-deps.sh
	node bench/run.js
