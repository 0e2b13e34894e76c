# clickhouse_outbox: `make demo` runs the whole pipeline on embedded defaults;
# `make test-fast` runs the tests that need no ClickHouse server (Python only, SQLite, a few minutes);
# `make test` runs the whole suite (it starts the ClickHouse test server and test cluster itself).
.DEFAULT_GOAL := help
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
REQS := requirements/dev.txt setup.py
TEST_DB_DIR := $(CURDIR)/.test-db
MYSQL_URL ?= mysql://root@127.0.0.1:3306/outbox
POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/outbox
SAMPLE := clickhouse_outbox/sample_course


.PHONY: help demo demo-admin docs wheel-check screenshots bench system-packages bytecode test test-fast test-sqlite test-mysql test-postgres test-tox test-server test-cluster quality tox requirements clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(VENV)/.installed: $(REQS)
	scripts/install-system-packages
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip wheel
	$(BIN)/pip install -q -r requirements/dev.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

venv: $(VENV)/.installed ## Create .venv with everything the demo and the tests need

# The docs build in a venv of their own (.venv-docs, requirements/doc.txt) so Sphinx's pins
# never disturb the main venv's; the package is installed there so the references can be
# generated from its settings table and its commands' parsers.
DOCS_VENV := .venv-docs
DOCS_REQS := requirements/doc.txt setup.py

$(DOCS_VENV)/.installed: $(DOCS_REQS)
	test -x $(DOCS_VENV)/bin/python || $(PYTHON) -m venv $(DOCS_VENV) || python3 -m venv $(DOCS_VENV)
	$(DOCS_VENV)/bin/pip install -q --upgrade pip wheel
	$(DOCS_VENV)/bin/pip install -q -r requirements/doc.txt
	$(DOCS_VENV)/bin/pip install -q --no-deps -e .
	touch $@

docs: $(DOCS_VENV)/.installed ## Build the Sphinx docs into docs/_build/html, warnings as errors (as Read the Docs and CI)
	rm -rf docs/_build
	$(DOCS_VENV)/bin/sphinx-build -q -W --keep-going -b html docs docs/_build/html
	@echo "Docs: docs/_build/html/index.html"

DEMO_ADMIN_PASSWORD ?= admin
DEMO_PORT ?= 8000

demo: $(VENV)/.installed ## Run the pipeline end to end on SQLite + chdb with the sample course
	@rm -rf .demo && mkdir -p .demo
	@time ( set -e; \
	$(PY) manage.py migrate -v 0 && \
	$(PY) manage.py clickhouse_outbox_schema --create && \
	$(PY) manage.py outbox_backfill && \
	$(PY) manage.py outbox_load_olx $(SAMPLE) && \
	$(PY) manage.py demo_learners course-v1:OpenedX+DemoX+2026_T1 && \
	$(PY) manage.py outbox_drain --until-empty --timeout 120 && \
	$(PY) manage.py clickhouse_outbox_outline course-v1:OpenedX+DemoX+2026_T1 && \
	$(PY) manage.py demo_learners --report course-v1:OpenedX+DemoX+2026_T1 && \
	$(PY) manage.py outbox_verify && \
	$(PY) manage.py outbox_status )
	@DJANGO_SUPERUSER_PASSWORD='$(DEMO_ADMIN_PASSWORD)' $(PY) manage.py createsuperuser --noinput \
	  --username admin --email admin@example.com >/dev/null
	@echo
	@echo "Every run starts from an empty .demo/, so the demo superuser was created again: admin / $(DEMO_ADMIN_PASSWORD)"
	@echo "(DEMO_ADMIN_PASSWORD=... make demo to choose the password)."
	@echo "Open the admin, with a celery worker that runs the drain and full dumps:"
	@echo "  make demo-admin    then http://127.0.0.1:$(DEMO_PORT)/admin/clickhouse_outbox/coursedelivery/"

demo-admin: $(VENV)/.installed ## Serve the demo's admin (styled) with a celery worker and beat; run `make demo` first
	@test -f .demo/outbox.sqlite3 || { echo "No demo database: run make demo first." >&2; exit 1; }
	@echo "Admin: http://127.0.0.1:$(DEMO_PORT)/admin/clickhouse_outbox/coursedelivery/ (admin / the demo password)."
	@echo "Celery worker + beat log: .demo/celery.log. Stop both with Ctrl-C."
	@CELERY_BROKER_URL=filesystem:// $(BIN)/celery -A outbox_project worker -B -P solo -l info \
	  --without-mingle --without-gossip -s .demo/celerybeat-schedule >.demo/celery.log 2>&1 & \
	worker=$$!; trap 'kill $$worker 2>/dev/null; wait $$worker 2>/dev/null' EXIT INT TERM; \
	CELERY_BROKER_URL=filesystem:// $(PY) manage.py runserver --insecure --noreload 127.0.0.1:$(DEMO_PORT)

screenshots: $(VENV)/.installed test-server ## Retake the admin screenshots in docs/images (the browser test, on SQLite)
	mkdir -p $(TEST_DB_DIR) docs/images
	set -a; eval "$$(scripts/clickhouse-test-server env)"; set +a; \
	OUTBOX_SCREENSHOTS=$(CURDIR)/docs/images DATABASE_URL=sqlite:///$(TEST_DB_DIR)/screenshots.sqlite3 \
	  $(BIN)/pytest -p no:cacheprovider tests/browser -q

bench: $(VENV)/.installed ## This project and its peers side by side, against a ClickHouse server of the run's own in memory (QUICK=1: small sizes; SIZES=10000,50000 for the learner scenarios); writes bench/results.json
	bench/peer/setup_venv.sh
	bench/peer/aspects/setup_venv.sh
	$(PY) bench/run.py $(if $(QUICK),--quick) $(if $(SIZES),--sizes $(SIZES))

test-server: ## Start the ClickHouse test server (Debian's clickhouse-server, loopback, password)
	scripts/clickhouse-test-server start

test-cluster: ## Start the replicated ClickHouse test cluster (ZooKeeper + two 18.16 replicas, loopback, password)
	scripts/clickhouse-test-cluster start

system-packages: ## Install the Debian packages the tests need (as root; otherwise it prints the apt-get line)
	scripts/install-system-packages

# The project's sources as bytecode before the tests start. Python reads it even where
# PYTHONDONTWRITEBYTECODE is set (this machine's shells set it), where it would otherwise compile
# the whole app again in every process the tests start: drainers, celery, commands (0.15 s each).
bytecode: $(VENV)/.installed
	$(PY) -m compileall -q clickhouse_outbox outbox_project tests

# The three lanes run side by side (scripts/test-lanes: a log each in .test-db/lanes/, the failing
# lane's failures printed at the end); tests that share a machine-wide service take it in turns.
TEST_LANES ?= sqlite mysql postgres

test: system-packages $(VENV)/.installed test-server test-cluster bytecode ## The whole suite, on SQLite, MariaDB and PostgreSQL (side by side)
	MAKE="$(MAKE)" scripts/test-lanes $(addprefix test-,$(TEST_LANES))

# The tests a machine with only Python runs: no ClickHouse server, no cluster, nothing slow.
# tests/conftest.py marks every test by the fixtures it requests, so none can forget its mark.
FAST := not clickhouse_server and not clickhouse_cluster and not slow
# The server's and cluster's variables are unset, so a test that reaches for them fails here.
NO_SERVER_ENV := $(foreach name,URL USERNAME PASSWORD,-u CLICKHOUSE_TEST_$(name)) \
	$(foreach name,URLS USERNAME PASSWORD NAME,-u CLICKHOUSE_CLUSTER_$(name))

test-fast: $(VENV)/.installed bytecode ## The tests that need no ClickHouse server or cluster and are not slow, on SQLite (no server started)
	mkdir -p $(TEST_DB_DIR)
	env $(NO_SERVER_ENV) DATABASE_URL=sqlite:///$(TEST_DB_DIR)/fast.sqlite3 \
	  $(BIN)/pytest -p no:cacheprovider -m "$(FAST)" -q

# The same tests in FAST_SHARDS shares (whole test files, tests/conftest.py's --shard), each on its
# own SQLite file: CI runs test-fast-1 and test-fast-2 side by side, one share on each core.
FAST_SHARDS ?= 2

test-fast-%: $(VENV)/.installed bytecode
	mkdir -p $(TEST_DB_DIR)
	env $(NO_SERVER_ENV) DATABASE_URL=sqlite:///$(TEST_DB_DIR)/fast-$*.sqlite3 \
	  $(BIN)/pytest -p no:cacheprovider -m "$(FAST)" -q --shard $*/$(FAST_SHARDS)

# AFTER_FAST=1 (CI, after `make test-fast`): only what test-fast left out, not the same tests twice.
test-sqlite: $(VENV)/.installed bytecode ## Everything, with the outbox on SQLite (AFTER_FAST=1: only what test-fast leaves out)
	mkdir -p $(TEST_DB_DIR)
	set -a; eval "$$(scripts/clickhouse-test-server env)"; eval "$$(scripts/clickhouse-test-cluster env)"; set +a; \
	DATABASE_URL=sqlite:///$(TEST_DB_DIR)/outbox.sqlite3 $(BIN)/pytest -p no:cacheprovider $(if $(AFTER_FAST),-m "not ($(FAST))")

test-mysql: $(VENV)/.installed bytecode ## The tests that use the outbox database, on MariaDB/MySQL
	set -a; eval "$$(scripts/clickhouse-test-server env)"; eval "$$(scripts/clickhouse-test-cluster env)"; set +a; \
	DATABASE_URL=$(MYSQL_URL) $(BIN)/pytest -p no:cacheprovider -m django_db

test-postgres: $(VENV)/.installed bytecode ## The tests that use the outbox database, on PostgreSQL
	set -a; eval "$$(scripts/clickhouse-test-server env)"; eval "$$(scripts/clickhouse-test-cluster env)"; set +a; \
	DATABASE_URL=$(POSTGRES_URL) $(BIN)/pytest -p no:cacheprovider -m django_db

# The platform releases' tox envs, as CI runs them (beside the database lanes: .ci/run's
# make test TEST_LANES="sqlite mysql postgres tox"): TOX_ENV (verawood: Python 3.12) on the tests
# that are not slow, then Ulmo's (its older tagging layout) on the tests of what touches tagging
# (every module that reads or writes tags, taxonomies and object tags), not the whole suite again.
# One after the other: both install the package from this checkout.
TOX_ENV ?= verawood
ULMO_TESTS := tests/sources/test_tags.py tests/sources/test_platform.py tests/producers tests/outbox/test_deletes.py \
	tests/reconcile/test_learners.py tests/project/test_clean_start.py

test-tox: $(VENV)/.installed ## tox -e TOX_ENV (verawood) on the tests that are not slow, then tox -e ulmo on ULMO_TESTS, against the test server and cluster
	set -a; eval "$$(scripts/clickhouse-test-server env)"; eval "$$(scripts/clickhouse-test-cluster env)"; set +a; \
	$(BIN)/tox -e $(TOX_ENV) -- -m "not slow" -q && \
	$(BIN)/tox -e ulmo -- $(ULMO_TESTS) -m "not slow" -q

quality: $(VENV)/.installed ## Lint, Django checks, migrations up to date, settings docs up to date
	$(BIN)/ruff check clickhouse_outbox tests outbox_project setup.py manage.py scripts/platform-release docs/conf.py docs/_ext
	$(PY) scripts/settings-docs --check
	$(MAKE) -s wheel-check
	$(PY) manage.py check --fail-level WARNING
	$(PY) manage.py makemigrations --check --dry-run clickhouse_outbox

wheel-check: ## Build the wheel and fail on any packaging warning of setuptools
	@out=$$(mktemp -d); trap 'rm -rf "$$out" build' EXIT; \
	$(BIN)/pip wheel -q --no-deps --no-build-isolation -w "$$out" . >"$$out/log" 2>&1 || { cat "$$out/log"; exit 1; }; \
	if grep -i 'warning' "$$out/log"; then echo "The wheel builds with packaging warnings (above)." >&2; exit 1; fi; \
	echo "wheel: $$(basename "$$out"/*.whl), no packaging warning"

tox: $(VENV)/.installed ## Each supported platform release (tox -e ulmo, verawood) and quality
	$(BIN)/tox

requirements: $(VENV)/.installed ## Re-pin requirements/*.txt from the .in files (verawood.txt on Python 3.12, through tox)
	for f in base embedded test quality dev tutor ulmo doc; do \
	  $(BIN)/pip-compile -q --allow-unsafe --no-strip-extras --no-emit-index-url --no-emit-find-links \
	    -o requirements/$$f.txt requirements/$$f.in; done
	$(BIN)/tox -e pip-compile-verawood

clean: ## Remove the venv, demo data and test server and cluster data
	-scripts/clickhouse-test-server stop
	-scripts/clickhouse-test-cluster stop
	rm -rf $(VENV) $(DOCS_VENV) docs/_build .demo .clickhouse-test .clickhouse-cluster .test-db .tox
