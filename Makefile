# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PIP     = $(PY) -m pip --disable-pip-version-check -q

.PHONY: run test fuzz bench docs lint typecheck clean venv

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip setuptools wheel

$(VENV)/.installed: $(VENV)/bin/python pyproject.toml
	$(PIP) install -e .
	touch $@

# The test environment also holds the suite's toy plug-in distribution (tests/plugins/
# acme_driver) and the example device package (docs/examples/example-devices, whose tests
# the suite collects): the tests find their drivers and module types by entry point, as
# users' plug-ins are found. PyPI extras cannot name a local path, hence these installs.
EXAMPLES = docs/examples/example-devices
$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml tests/plugins/acme_driver/pyproject.toml \
		$(EXAMPLES)/pyproject.toml
	$(PIP) install -e '.[test]'
	$(PIP) install --no-deps --no-build-isolation -e tests/plugins/acme_driver
	$(PIP) install --no-deps --no-build-isolation -e $(EXAMPLES)
	touch $@

venv: $(VENV)/.installed

# The main job: the simulated continuous lomustine campaign (8 h simulated in about 2.5 min).
CAMPAIGN ?= recipes/lomustine/campaign.yaml
SPEED    ?= 240
RUN_ARGS ?=

run: $(VENV)/.installed
	$(VENV)/bin/modulecontrol run $(CAMPAIGN) --simulate --speed $(SPEED) --yes $(RUN_ARGS)

# Style is ruff's lint rules (pyproject.toml); the code is not run through a formatter.
lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .

typecheck: $(VENV)/.installed-test
	$(VENV)/bin/mypy

# One process by default: the fault matrix's detection bounds and the whole-line tests hold
# on 2 cores with the other core busy, not beside a second worker's whole line. On a larger
# machine `make test TEST_WORKERS="-n 2 --dist loadgroup --max-worker-restart 0"` runs
# the whole-line tests one after another on one worker and the rest on the other
# (tests/conftest.py); a crashed worker then ends the run instead of being replaced.
TEST_WORKERS ?=

test: $(VENV)/.installed-test
	.ci/install-servers
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -q $(TEST_WORKERS) --durations=25

# The fuzz suite with many more examples than `make test` runs (docs/reliability.md, "Fuzzing"),
# and the long property tests whose full example count is kept out of `make test`
# (tests/_profiles.py).
FUZZ_TESTS = tests/fuzz tests/simulators/test_sim_jacket_stability.py
fuzz: $(VENV)/.installed-test
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest -q -p no:cacheprovider $(FUZZ_TESTS)

# The load bench (bench/load.py) scans 50 modules for LOAD_DURATION seconds. The issue's
# figures are from the 10-minute run (`make bench LOAD_DURATION=600`, or
# `python -m bench.load`); 60 s keeps `make bench` short. See docs/reliability.md, "Load".
LOAD_DURATION ?= 60
# The fleet bench (bench/fleet.py): 20 lines x 50 modules at 1 Hz through one Mosquitto into
# PostgreSQL, with a broker outage of FLEET_BENCH_OUTAGE seconds; the issue's figures are
# from the 5-minute outage (`make bench FLEET_BENCH_OUTAGE=300`). See docs/scale-out.md.
FLEET_BENCH_OUTAGE ?= 30
# The control service bench (bench/service.py): the measured window of event latency under
# value changes and recipe events, 20 clients (docs/api.md, "Measured").
SERVICE_DURATION ?= 30

bench: $(VENV)/.installed-test
	LOAD_DURATION=$(LOAD_DURATION) FLEET_BENCH_OUTAGE=$(FLEET_BENCH_OUTAGE) \
		SERVICE_DURATION=$(SERVICE_DURATION) $(PY) -m bench

# Generated docs: the fault-matrix table (docs/reliability-table.md), measured by a run of
# every transport of tests/faults, the built-in types' register maps (docs/register-maps.md)
# and the batch report's charts of a short simulated run (docs/img).
# `make test` only checks what is committed (the table's cells and verdicts, not the measured
# times; the maps exactly) and never writes into the tree; this target rewrites both.
docs: $(VENV)/.installed-test
	$(PY) -m pytest tests/faults -q -p no:cacheprovider --update-docs
	$(PY) -m modulecontrol.drivers.register_maps docs/register-maps.md
	$(PY) -m modulecontrol.docgen report-images docs/img
	$(PY) -m modulecontrol.docgen twin-images docs/img

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .pytest_cache .ruff_cache runs
