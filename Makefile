# Every target is one command; CI runs `make test` exactly as people do.
VENV   ?= .venv
PY     := $(VENV)/bin/python
BIND   ?= 127.0.0.1:8080
CONFIG ?= crabllm.toml

.PHONY: install install-test run serve test fuzz lint fmt bench bench-console screenshots lock clean

$(VENV)/.run: requirements.lock setup.cfg pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --require-hashes -r requirements.lock
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

$(VENV)/.test: requirements-test.lock setup.cfg pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --require-hashes -r requirements-test.lock
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@ $(VENV)/.run

install: $(VENV)/.run

install-test: $(VENV)/.test
	scripts/system-deps

# A first run writes the starter config (`crabllm-sync init`), then serves it.
run: install
	test -e $(CONFIG) || $(VENV)/bin/crabllm-sync init --config $(CONFIG) --listen $(BIND)
	$(VENV)/bin/crabllm-sync serve --config $(CONFIG) --bind $(BIND)

serve: run

# Tests mostly wait on servers, so more processes than cores pay; a file's
# tests stay in one process (--dist loadfile: module fixtures start once).
# HYPOTHESIS_PROFILE=ci runs a sample of each property test (tests/fuzzing.py).
TEST_PROCESSES ?= 4

test: install-test
	HYPOTHESIS_PROFILE=ci $(PY) -m pytest -n $(TEST_PROCESSES) --dist loadfile

# The same suite with every property test at its full number of examples
# (hostile input, schemathesis, translations): the long run.
fuzz: install-test
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest -n $(TEST_PROCESSES) --dist loadfile

# Console page times with a million usage rows and log records in sqlite
# (bench/console.py writes bench/CONSOLE.md); not part of `make test`.
bench-console: install
	$(PY) -m bench.console

# Screenshots of every console page into docs/console/ (Playwright driving
# the system chromium of scripts/system-deps; no browser download).
screenshots: install-test
	$(PY) scripts/console_screenshots.py

lint: install-test
	$(VENV)/bin/ruff check crabllm_sync tests bench && $(VENV)/bin/ruff format --check crabllm_sync tests bench

fmt: install-test
	$(VENV)/bin/ruff format crabllm_sync tests bench && $(VENV)/bin/ruff check --fix crabllm_sync tests bench

# The benchmark runs on the runtime install only (requirements.lock), as
# deployed: test-only packages would be measured too (peewee imports
# psycopg2 whenever it is installed: ~6 MB per worker).
BENCH_VENV ?= .venv-bench

# py-spy (requirements-bench.lock) profiles the gateway at the end of the run.
bench:
	$(MAKE) install VENV=$(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install -q --require-hashes -r requirements-bench.lock
	$(BENCH_VENV)/bin/python -m bench.run

lock:
	$(VENV)/bin/uv pip compile setup.cfg requirements-build.in --generate-hashes --python-version 3.11 -o requirements.lock -q
	$(VENV)/bin/uv pip compile setup.cfg requirements-build.in --extra test --generate-hashes --python-version 3.11 -o requirements-test.lock -q
	# google-genai asks for google-auth[requests]; pip 23.2 in --require-hashes
	# mode treats that extra as unpinned and takes the newest google-auth
	# (install fails), so the lock pins the extra itself.
	sed -i 's/^google-auth==/google-auth[requests]==/' requirements-test.lock
	$(VENV)/bin/uv pip compile requirements-bench.in --generate-hashes --python-version 3.11 -o requirements-bench.lock -q

clean:
	rm -rf $(VENV) $(BENCH_VENV) .pytest_cache build *.egg-info
