# gridmesh: every target sets up what it needs itself (a .venv beside this file).
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
OUT ?= out

.PHONY: demo test lint types pytest bench bench-membership bench-aggregation venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "gridmesh needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

# The main job: four smart-grid services on the embedded simulator, each
# writing report.json, report.html and CSVs under $(OUT)/<name>/ (about 2 minutes):
# a tariff change reaching 10,000 meters whose devices react; the utility summing
# 3,000 meters' night demand; demand response at 100,000 customers after a fault;
# ReDy balancing of 10,000 governance units while a tenth of them fail.
DEMO_SCENARIOS ?= tariff-broadcast night-demand dr-corrective redy-balancing
demo: $(STAMP)
	@for name in $(DEMO_SCENARIOS); do \
		$(BIN)/gridmesh simulate examples/$$name.toml --out $(OUT)/$$name || exit $$?; \
	done

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples

types: $(STAMP)
	$(BIN)/mypy --strict src

# tests/test_topics_mosquitto.py checks topic matching against a real Mosquitto broker.
MOSQUITTO_INSTALL ?= apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto
# tests/test_report_html_chromium.py opens report.html in headless Chromium.
CHROMIUM_INSTALL ?= apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
# tests/test_historian.py runs the PostgreSQL backend against a server it starts itself.
POSTGRES_INSTALL ?= apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql

pytest: $(STAMP)
	@command -v mosquitto >/dev/null || test -x /usr/sbin/mosquitto || ($(MOSQUITTO_INSTALL))
	@command -v chromium >/dev/null || ($(CHROMIUM_INSTALL))
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null || ($(POSTGRES_INSTALL))
	$(BIN)/python -m pytest -W error -q

test: lint types pytest

bench: $(STAMP)
	$(BIN)/python bench/sim_throughput.py
	$(BIN)/python bench/model_broadcast.py all
	$(BIN)/python bench/dissemination.py all
	$(BIN)/gridmesh compare examples/compare/*.toml --out bench/results/compare

# About two hours on 2 cores (100 connectivity runs at 10^4 nodes).
bench-membership: $(STAMP)
	$(BIN)/python bench/membership.py all

# Tree aggregation at 10^5 (exact) and 10^4 (faults), push-sum at 10^5 (a few GiB).
bench-aggregation: $(STAMP)
	$(BIN)/python bench/aggregation.py tree --out bench/results/aggregation-tree.json
	$(BIN)/python bench/aggregation.py tree --nodes 10000 --loss 0.05 --crash 0.05 \
		--out bench/results/aggregation-tree-faults.json
	$(BIN)/python bench/aggregation.py pushsum --out bench/results/aggregation-pushsum.json

clean:
	rm -rf $(VENV) $(OUT) .mypy_cache .pytest_cache .ruff_cache
