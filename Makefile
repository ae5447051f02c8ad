# Two entry points (see README): `make search` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV ?= .venv
VENV_OPTS ?=
TORCH_SPEC ?= torch==2.13.0
SPACE ?= resnet50
BUDGET ?= 4gflops
BIN := $(VENV)/bin
STAMP := $(VENV)/.nasconv-installed

.PHONY: setup data browser search test test-fast lint docs bench clean

setup: $(STAMP) data

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV_OPTS) $(VENV)
	@# A torch already in the environment (e.g. a user's CUDA build) is kept; otherwise the CPU build.
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[test,postgres]"
	@touch $(STAMP)

# Real Fashion-MNIST from Debian's package, when apt-get is there and the data is not.
data:
	@if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && [ -z "$$NASCONV_DATA" ] \
	    && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 \
	    || echo "note: could not install dataset-fashion-mnist; nasconv will look in --data-dir / NASCONV_DATA"; \
	fi

search: setup
	$(BIN)/nasconv search --space $(SPACE) --budget $(BUDGET)

test: setup lint browser docs
	$(BIN)/python -m pytest -q

# The documentation site (MkDocs + Material + mkdocstrings): the error list regenerated from the
# source, then a strict build (a broken link or a missing API reference fails it).
DOCS_STAMP := $(VENV)/.nasconv-docs-installed
$(DOCS_STAMP): $(STAMP)
	$(BIN)/pip install -q -e ".[docs]"
	@touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	$(BIN)/python docs/gen_errors.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -q

# Debian's Chromium for the report and dashboard tests (a real headless browser), when missing.
browser:
	@if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null 2>&1 \
	    || echo "note: could not install chromium; the browser tests will skip (fail under CI)"; \
	fi

# One-way layers (import-linter contract in pyproject.toml) and ruff's checks.
lint: setup
	$(BIN)/lint-imports
	$(BIN)/ruff check nasconv tests benchmarks

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

bench: setup
	$(BIN)/python benchmarks/cost_speed.py
	$(BIN)/python benchmarks/ops_latency.py
	$(BIN)/python benchmarks/search_overhead.py
	$(BIN)/python benchmarks/search_quality.py
	$(BIN)/python benchmarks/sampler_surrogate.py
	$(BIN)/python benchmarks/proxy_fidelity.py
	$(BIN)/python benchmarks/data_pipeline.py
	$(BIN)/python benchmarks/precision_fidelity.py
	$(BIN)/python benchmarks/bf16_budget.py
	$(BIN)/python benchmarks/latency_isolation.py
	$(BIN)/python benchmarks/latency_model.py
	$(BIN)/python benchmarks/report_speed.py

clean:
	rm -rf $(VENV) *.egg-info site
