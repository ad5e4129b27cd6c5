# vlm-export developer commands. `make demo` and `make test` install what they need first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install test test-fast test-arm demo bench train-tiny lint format clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: anything unpinned that needs torch would otherwise fetch a CUDA build
	$(BIN)/pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e ".[export,openvino,dev]"
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# x86 vs emulated aarch64 (qemu user mode): same token ids and logits; see scripts/arm/
test-arm: install
	bash scripts/arm/setup.sh
	$(BIN)/python scripts/arm/compare.py

demo: install
	$(BIN)/vlm-export demo

# Rebuilds the shipped model from its seed (about an hour on 2 cores); CI runs only a smoke test of it.
train-tiny: install
	$(BIN)/vlm-export train-tiny vlm_export/shapes/tiny-shapes --minutes 60 --seed 0

bench: install
	$(BIN)/pip install --quiet -c constraints.txt -e ".[peers]"  # optimum-intel, the peer it compares with
	$(BIN)/python bench/run.py bench/standard.toml bench/smolvlm.toml bench/smolvlm-1tile.toml
	$(BIN)/python bench/quant_accuracy.py

lint: install
	$(BIN)/ruff check vlm_export tests bench scripts
	$(BIN)/ruff format --check vlm_export tests bench scripts

format: install
	$(BIN)/ruff check --fix vlm_export tests bench scripts
	$(BIN)/ruff format vlm_export tests bench scripts

clean:
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache *.egg-info
