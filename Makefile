# Everything the README promises: `make demo` and `make test` each set themselves up
# on a machine with only Python 3.11+, git and make.
PYTHON ?= python3
UV_VERSION := 0.13.9
VENV := .venv
VENV30 := .venv-airflow-3.0
BIN := $(VENV)/bin
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: demo bench test lint browser services venv lock clean

# Build a virtual environment with uv from the pinned lock file.
# $(1): venv dir, $(2): lock file.
define make_venv
	rm -rf $(1)
	$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(1)
	$(1)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(1)/bin/uv pip install --quiet --python $(1)/bin/python -r $(2)
	$(1)/bin/uv pip install --quiet --python $(1)/bin/python --no-deps -e .
endef

$(VENV)/.installed: requirements/lock-airflow-3.3.txt pyproject.toml
	$(call make_venv,$(VENV),requirements/lock-airflow-3.3.txt)
	touch $@

$(VENV30)/.installed: requirements/lock-airflow-3.0.txt pyproject.toml
	$(call make_venv,$(VENV30),requirements/lock-airflow-3.0.txt)
	touch $@

venv: $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/python scripts/demo.py

# Every benchmark side by side in one run (about 14 minutes on 2 cores, 7 of them the polling
# measurement); rewrites the table in benchmarks/README.md, benchmarks/results.json and the
# figures benchmarks/polling-*.png (matplotlib, from the `bench` dependency group in the 3.3 lock).
bench: $(VENV)/.installed
	$(BIN)/python -m benchmarks.run

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Airflow 3.0 supports Python up to 3.12; its pins are resolved for 3.11 and 3.12 only.
PY_MINOR := $(shell $(PYTHON) -c 'import sys; print(sys.version_info[1])')
FLOOR_OK := $(shell [ $(PY_MINOR) -le 12 ] && echo yes)

# The whole suite on the newest Airflow and, alongside it, again on the floor we claim (3.0).
# Three lanes run at once, since most of their time is spent waiting on emulated jobs and Airflow's own
# loops: the 3.3 leg without the real deployments, the real deployments (e2e: tests/e2e and the
# benchmark smoke run, newest Airflow only), and the 3.0 leg. The 3.0 leg skips the tests that do not
# depend on Airflow's version (airflow_independent) and the real deployments. The other two lanes'
# output is printed when all are done, and kept in $(FLOOR_LOG) and $(E2E_LOG).
FLOOR_LOG := test-artifacts/pytest-airflow-3.0.log
E2E_LOG := test-artifacts/pytest-e2e.log
test: lint
ifeq ($(FLOOR_OK),yes)
	$(MAKE) --no-print-directory $(VENV30)/.installed
	@mkdir -p test-artifacts
	@echo "Running alongside this output: the real deployments (output in $(E2E_LOG)) and the Airflow 3.0 leg ($(FLOOR_LOG))"
	@$(VENV30)/bin/python -m pytest -p no:cacheprovider -m "not airflow_independent and not e2e" \
		> $(FLOOR_LOG) 2>&1 & floor=$$!; \
	$(BIN)/python -m pytest -p no:cacheprovider -m e2e > $(E2E_LOG) 2>&1 & e2e=$$!; \
	trap 'kill $$floor $$e2e 2>/dev/null' INT TERM; \
	$(BIN)/python -m pytest -p no:cacheprovider -m "not e2e"; newest=$$?; \
	wait $$e2e; e2e_rc=$$?; \
	wait $$floor; floor_rc=$$?; \
	echo "=== Real deployments, Airflow 3.3 ($(E2E_LOG)) ==="; cat $(E2E_LOG); \
	echo "=== Airflow 3.0 leg ($(FLOOR_LOG)) ==="; cat $(FLOOR_LOG); \
	echo "Airflow 3.3 leg: exit $$newest; real deployments: exit $$e2e_rc; Airflow 3.0 leg: exit $$floor_rc"; \
	[ $$newest -eq 0 ] && [ $$e2e_rc -eq 0 ] && [ $$floor_rc -eq 0 ]
else
	$(BIN)/python -m pytest -p no:cacheprovider
	@echo "Airflow 3.0 leg skipped: Airflow 3.0 does not run on Python 3.$(PY_MINOR) (use 3.11 or 3.12)"
endif

# The one system package the suite uses: Debian's chromium, for the UI test in tests/e2e
# (Playwright drives /usr/bin/chromium; it never downloads a browser). Needs root or sudo.
browser:
	@if [ -x /usr/bin/chromium ]; then /usr/bin/chromium --version; else \
		SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium \
		&& /usr/bin/chromium --version; fi

# The servers of the Celery deployment leg (tests/e2e/test_celery_deployment.py): Debian's postgresql
# and redis-server. The test starts its own throwaway instances on loopback ports; the packages' own
# services are not used. Needs root or sudo.
services:
	@if [ -x /usr/bin/redis-server ] && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		/usr/bin/redis-server --version; ls -d /usr/lib/postgresql/*/bin; else \
		SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends postgresql redis-server \
		&& /usr/bin/redis-server --version; fi

# Re-resolve the pins (needs a venv; run after changing dependencies). Airflow 3.0 is resolved
# as of its release (newer FastAPI/pydantic break its task runner); test tools are exempt.
# The test, lint and bench tools are dependency groups (pyproject.toml), never published metadata.
FLOOR_DATE := 2025-09-10T00:00:00Z
NEWEST := $(shell date -u +%Y-%m-%dT00:00:00Z)
FLOOR_EXEMPT := pytest pytest-asyncio pytest-timeout respx segmind apache-airflow-providers-common-compat asgiref hypothesis moto playwright py-partiql-parser av
lock: $(VENV)/.installed
	$(BIN)/uv pip compile -q --universal --python-version 3.11 pyproject.toml --extra emulator --extra media \
		--group pyproject.toml:test --group pyproject.toml:lint --group pyproject.toml:bench \
		--group pyproject.toml:deployment \
		requirements/airflow-3.3.in -o requirements/lock-airflow-3.3.txt
	$(BIN)/uv pip compile -q --python-version 3.11 pyproject.toml --extra emulator --extra media --group pyproject.toml:test \
		requirements/airflow-3.0.in -o requirements/lock-airflow-3.0.txt --exclude-newer $(FLOOR_DATE) \
		$(foreach p,$(FLOOR_EXEMPT),--exclude-newer-package $(p)=$(NEWEST))

clean:
	rm -rf $(VENV) $(VENV30) .airflow-demo test-artifacts
