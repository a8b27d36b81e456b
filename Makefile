# One-command set-up: `make run` starts the app, `make test` runs the whole suite.
# The editable install is in compat mode: it puts the checkout on sys.path, so RAIL's
# import_and_attach_all finds the deepz stages in the rail namespace package (rail/).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# the fast tests run in this many processes (one torch thread each; a 2-core machine: 2), the slow
# end-to-end tests (browser, Dask, worker processes, experiments) one at a time after them
TEST_PROCESSES ?= 2

.PHONY: run test lint format bench clean-venv

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e . --config-settings editable_mode=compat
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m deepz_core demo --quiet
	$(PY) -m streamlit run app/main.py --server.address 127.0.0.1 --server.port 8501

test: $(STAMP)
	bash scripts/install-browser.sh
	$(PY) -m ruff check deepz_core app pages tests scripts rail
	$(PY) -m ruff format --check deepz_core app pages tests scripts rail
	OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest -n $(TEST_PROCESSES) --dist loadfile -m "not slow"
	$(PY) -m pytest -m slow

lint: $(STAMP)
	$(PY) -m ruff check deepz_core app pages tests scripts rail
	$(PY) -m ruff format --check deepz_core app pages tests scripts rail

format: $(STAMP)
	$(PY) -m ruff format deepz_core app pages tests scripts rail
	$(PY) -m ruff check --fix deepz_core app pages tests scripts rail

bench: $(STAMP)
	$(PY) -m deepz_core bench

clean-venv:
	rm -rf $(VENV)
