# Every target installs what it needs first: a fresh clone needs only Python 3.11+ and make.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
COMPOSE ?= docker compose

.DEFAULT_GOAL := help
.PHONY: help install demo test lint format migrate worker status web bench bench-quick up up-worker down restart logs clean check-mail

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "jobs needs Python 3.11 or newer, $(PYTHON) is " + sys.version.split()[0])'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade 'pip>=25.1'
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[cache]' --group dev
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install jobs with its dev tools

demo: install ## Run the whole flow: embedded Postgres, migrations, local SMTP sink, worker
	$(BIN)/jobs demo

test: install ## Run the test suite (real PostgreSQL, real SMTP peer, real Redis when reachable)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install ## ruff (lint + format check) and mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

migrate: install ## Bring the database to the latest schema
	$(BIN)/jobs migrate

worker: install ## Run a worker on every queue
	$(BIN)/jobs worker

status: install ## Show queues, workers, rates and the email ledger
	$(BIN)/jobs status

web: install ## Serve the unsubscribe endpoint and the dashboard (WEB_HOST:WEB_PORT)
	$(BIN)/jobs web

BENCH_STAMP := $(VENV)/.bench-stamp
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e . --group bench
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP) ## Every benchmark scenario (about 30 min); writes bench/RESULTS.md
	$(BIN)/python -m bench.run $(BENCH_ARGS)

bench-quick: $(BENCH_STAMP) ## A smoke run of the benchmarks (seconds), output in .data/bench
	$(BIN)/python -m bench.run --quick --output .data/bench/RESULTS-quick.md $(BENCH_ARGS)

check-mail: install ## SpamAssassin (Debian package, local tests only) scores a welcome and a promotion: fail above 0
	$(BIN)/python -m tests.check_mail

clean: ## Remove the virtualenv and local data (.data)
	rm -rf $(VENV) .data .mypy_cache .ruff_cache .pytest_cache

# --- Operations: Docker Compose (docker-compose.yml) --------------------------------------
WORKERS ?= 2
SERVICE ?=

up: ## Start postgres, migrations, mailpit and a worker in Docker (UI: localhost:8025)
	$(COMPOSE) up -d --build

up-worker: ## Start/scale the workers in Docker: make up-worker WORKERS=4
	$(COMPOSE) up -d --build --scale worker=$(WORKERS) worker

down: ## Stop the Docker stack (the database stays in the pgdata volume)
	$(COMPOSE) down

restart: ## Restart the Docker services gracefully (SERVICE=worker for one)
	$(COMPOSE) restart $(SERVICE)

logs: ## Follow the Docker logs (SERVICE=worker for one service)
	$(COMPOSE) logs -f --tail=100 $(SERVICE)
