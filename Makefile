# Everything the README promises: `make demo` and `make test` each set themselves up
# on a machine with only Python 3.11+, git and make.
PYTHON ?= python3
UV_VERSION := 0.13.9
VENV := .venv
VENV30 := .venv-airflow-3.0
BIN := $(VENV)/bin
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: demo bench test lint unit test-airflow-3.0 venv lock clean

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

# Every benchmark side by side in one run (about 12 minutes on 2 cores); rewrites the table in
# benchmarks/README.md and benchmarks/results.json.
bench: $(VENV)/.installed
	$(BIN)/python -m benchmarks.run

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Airflow 3.0 supports Python up to 3.12; its pins are resolved for 3.11 and 3.12 only.
PY_MINOR := $(shell $(PYTHON) -c 'import sys; print(sys.version_info[1])')
FLOOR_OK := $(shell [ $(PY_MINOR) -le 12 ] && echo yes)

# The whole suite on the newest Airflow, then again on the floor we claim (3.0).
test: lint
ifeq ($(FLOOR_OK),yes)
	$(MAKE) $(VENV30)/.installed
endif
	$(BIN)/python -m pytest -p no:cacheprovider
ifeq ($(FLOOR_OK),yes)
	$(VENV30)/bin/python -m pytest -p no:cacheprovider -m "not airflow_independent"
else
	@echo "Airflow 3.0 leg skipped: Airflow 3.0 does not run on Python 3.$(PY_MINOR) (use 3.11 or 3.12)"
endif

# Re-resolve the pins (needs a venv; run after changing dependencies). Airflow 3.0 is resolved
# as of its release (newer FastAPI/pydantic break its task runner); test tools are exempt.
FLOOR_DATE := 2025-09-10T00:00:00Z
NEWEST := $(shell date -u +%Y-%m-%dT00:00:00Z)
FLOOR_EXEMPT := pytest pytest-asyncio pytest-timeout respx segmind apache-airflow-providers-common-compat asgiref hypothesis moto playwright py-partiql-parser
lock: $(VENV)/.installed
	$(BIN)/uv pip compile -q --universal --python-version 3.11 pyproject.toml --extra test --extra lint \
		requirements/airflow-3.3.in -o requirements/lock-airflow-3.3.txt
	$(BIN)/uv pip compile -q --python-version 3.11 pyproject.toml --extra test \
		requirements/airflow-3.0.in -o requirements/lock-airflow-3.0.txt --exclude-newer $(FLOOR_DATE) \
		$(foreach p,$(FLOOR_EXEMPT),--exclude-newer-package $(p)=$(NEWEST))

clean:
	rm -rf $(VENV) $(VENV30) .airflow-demo
