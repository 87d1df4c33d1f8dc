# Two commands for a fresh machine:  `make demo` (main job on generated sample data) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is pinned to the CPU build that this workplace has on disk; on a GPU machine install the CUDA build instead.
TORCH ?= torch==2.13.0

$(BIN)/emim: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[test]"
	touch $(BIN)/emim

setup: $(BIN)/emim

# the real BraTS mini cases, when ../shared is beside the checkout, are segmented and scored too (never trained on)
REAL_CASES := $(wildcard ../shared/data/brats-gli-mini)

demo: setup
	$(BIN)/python -m emim demo --out demo-output $(if $(REAL_CASES),--real-cases $(REAL_CASES))

# two pytest-xdist workers, a test file each at a time (module fixtures are built once): while one waits on an
# engine process starting up, the other computes (Testing/conftest.py shares the cores out between them)
TEST_WORKERS ?= 2

test: setup
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# Pictures of both panels at their key states, made by the panel tests' click paths (Testing/test_panels.py)
screenshots: setup
	EMIM_SCREENSHOTS=docs/screenshots $(BIN)/python -m pytest -q Testing/test_panels.py

# Re-train the shipped starter model from generated data (about an hour on 2 CPU cores; see bench/starter_model.py).
starter-model: setup
	$(BIN)/python bench/starter_model.py --seed 0

.PHONY: setup demo test screenshots starter-model
