# make run  : set up .venv (first time) and run the main job, the lecture tour
# make test : set up .venv with the dev extra (first time), lint, and run the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU wheel of this version lies on this project's machines; other versions download gigabytes.
TORCH_PIN := torch==2.13.0
CODE := $(wildcard src tests benchmarks)

.PHONY: run test lint format clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install --quiet $(TORCH_PIN)
	$(BIN)/pip install --quiet -e .
	touch $@

# The TFLite exporter (litert-torch) goes in after the dev extra: through xdsl it pins
# typing-extensions<4.13, which would take pydantic back to 2.11; both are raised again (xdsl
# works with them: tests/deploy/test_formats.py's TFLite round trips pass), pip notes the pin.
LITERT := 'litert-torch>=0.10' 'ai-edge-litert>=2.0'

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet $(TORCH_PIN) -e '.[dev]'
	$(BIN)/pip install --quiet $(LITERT)
	$(BIN)/pip install --quiet --upgrade 'typing-extensions>=4.14' 'pydantic>=2.12'
	touch $@

run: $(VENV)/.installed
	$(BIN)/cnnlab tour

lint: $(VENV)/.installed-dev
	$(BIN)/ruff format --check $(CODE)
	$(BIN)/ruff check $(CODE)

format: $(VENV)/.installed-dev
	$(BIN)/ruff format $(CODE)
	$(BIN)/ruff check --fix $(CODE)

test: lint
	$(BIN)/python -m pytest -n 2 -q

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
