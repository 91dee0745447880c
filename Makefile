# Two entry points for a fresh machine: `make up` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
OUT ?= out

.PHONY: runtime install up fill test lint bench bench-quick clean

# `make up` needs the runtime only; lint, tests and benchmarks add the test tools and Ray.
$(VENV)/.runtime: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed: $(VENV)/.runtime
	$(PY) -m pip install -q -e '.[test,ray]'
	touch $@

runtime: $(VENV)/.runtime

install: $(VENV)/.installed

fill: runtime
	$(VENV)/bin/mosu sim fill \
		--nodes ../shared/traces/alibaba-gpu-v2023-openb/openb_node_list_gpu_node.csv \
		--pods ../shared/traces/alibaba-gpu-v2023-openb/openb_pod_list_default.csv \
		--policy random --policy dotprod --policy clustering --policy packing \
		--policy bestfit --policy fgd --policy mosu --seeds 10 --out $(OUT)

lint: install
	$(VENV)/bin/ruff check src tests bench scripts
	$(VENV)/bin/ruff format --check src tests bench scripts
	$(VENV)/bin/mypy

# Coverage of src/mosu is reported and held above the floor in pyproject.toml.
test: lint
	$(PY) -m pytest -q --cov --cov-report=term
	$(MAKE) bench-quick

bench-quick: install
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b --quick || exit 1; done

bench: install
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .ruff_cache .mypy_cache .coverage

# Demo-friendly: a job may be reclaimed after 20 s (the profile's default is 120 s) and
# gets 10 s to checkpoint. Override with `make up UP_FLAGS=`.
UP_FLAGS ?= --min-runtime 20 --grace 10

up: runtime
	$(VENV)/bin/mosu up $(UP_FLAGS)
