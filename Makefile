# The two set-up commands of the README: `make demo` (the main job) and `make test`.
# Each creates .venv with the Python 3.11+ found as $(PYTHON) and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUN_DIR ?= out/demo
DEMO_MINUTES ?= 3

.PHONY: demo test lint clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "framecast needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

# The main job on the embedded default (CPU, local store, synthetic data); about 5 minutes.
# (`framecast run pipeline=demo` will chain these stages with caching: issue 8.)
demo: $(BIN)/.installed
	$(BIN)/framecast synth data=moving_mnist store=$(RUN_DIR)/mm.zarr synth.num_videos=2000
	$(BIN)/framecast train model=lstm_autoencoder_small store=$(RUN_DIR)/mm.zarr \
	  run_dir=$(RUN_DIR)/train trainer.max_minutes=$(DEMO_MINUTES) trainer.max_steps=100000
	$(BIN)/framecast evaluate checkpoint=$(RUN_DIR)/train/checkpoints/last.pt \
	  store=$(RUN_DIR)/mm.zarr
	$(BIN)/framecast predict checkpoint=$(RUN_DIR)/train/checkpoints/last.pt \
	  store=$(RUN_DIR)/mm.zarr predict.video=mm-test-000000 predict.horizon=20 \
	  out=$(RUN_DIR)/prediction.mp4

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) out
