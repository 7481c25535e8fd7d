# The two set-up commands of the README: `make demo` (the main job) and `make test`.
# Each creates .venv with the Python 3.11+ found as $(PYTHON) and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUN_DIR ?= out/demo

.PHONY: demo test lint clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "framecast needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# an editable install of a package-dir mapping (configs/ -> pipeline.configs) makes setuptools
	# print an "Editable installation." notice (information only, not a packaging problem; the
	# wheel build prints nothing: tests/pipeline/test_packaging.py): silenced by its message
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

# The main job on the embedded default (CPU, local store, synthetic data):
# configs/pipeline/demo.yaml, within 10 minutes on 2 cores; a rerun skips what is done.
# Then open $(RUN_DIR)/report.html.
demo: $(BIN)/.installed
	$(BIN)/framecast run pipeline=demo run_dir=$(RUN_DIR)

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) out
