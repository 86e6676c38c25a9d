# One toolchain: every target creates the virtual environment when it is missing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
ARGS   ?=

.PHONY: run demo cluster cluster-stop test test-fast lint format bench bench-compare load verify clean

$(VENV)/.runtime: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PIP) install -q -r requirements-dev.txt
	touch $@

frontend/node_modules/.installed: frontend/package.json frontend/package-lock.json
	cd frontend && npm ci --no-audit --no-fund --silent
	touch $@

run: $(VENV)/.runtime frontend/node_modules/.installed  ## run the service on 127.0.0.1:5000
	$(PY) api/app.py $(ARGS)

demo: $(VENV)/.runtime frontend/node_modules/.installed  ## the service plus a simulated market (maker and takers: own accounts)
	$(PY) api/app.py --demo $(ARGS)

cluster: $(VENV)/.runtime frontend/node_modules/.installed  ## Redis, the engine, two edges, nginx on 127.0.0.1:8080
	$(PY) deploy/cluster.py run $(ARGS)

cluster-stop:  ## stop what `make cluster` started (by PID)
	$(PY) deploy/cluster.py stop $(ARGS)

test: $(VENV)/.dev frontend/node_modules/.installed  ## every test: engine, API, durability, browser
	$(PY) -m pytest $(ARGS)

test-fast: $(VENV)/.dev  ## everything but the browser and real-server tests
	$(PY) -m pytest -m "not browser and not server" $(ARGS)

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.dev
	$(VENV)/bin/ruff format .

bench: $(VENV)/.dev  ## engine benchmark: shared workload, deep book, sweeps, memory
	$(PY) tests/bench_engine.py $(ARGS)

bench-compare: $(VENV)/.dev  ## side by side with the shared yardstick engines
	@# matching-engine needs Python 3.12; under pyenv, make every installed version visible
	PYENV_VERSION=$$(pyenv versions --bare 2>/dev/null | paste -sd: -) \
	  PATH=$(CURDIR)/$(VENV)/bin:$$PATH bash ../shared/bench/compare.sh $(CURDIR)/tests/bench_adapter.py

load: $(VENV)/.dev  ## end-to-end load test against a server you started
	$(PY) tests/advanced_load_test.py $(ARGS)

verify: $(VENV)/.runtime  ## verify a data dir offline (chain, replay, snapshots, balances add up): make verify [ARGS="--data-dir DIR"]
	$(PY) -m storage.verify $(or $(ARGS),--data-dir ./data)

clean:
	rm -rf $(VENV) frontend/node_modules .pytest_cache .hypothesis
