# `make demo` and `make test` each create or update .venv and install what they need.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test bench gpu-deps clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev,fid]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/translate demo

# the upload page is tested in a real headless Chromium from the system's packages
CHROMIUM := $(shell command -v chromium 2>/dev/null)

test: $(STAMP)
ifeq ($(CHROMIUM),)
	-(apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "chromium not installed: browser test will be skipped"
endif
	$(VENV)/bin/lint-imports    # the layers (pyproject.toml [tool.importlinter]): an import back up fails here
	$(VENV)/bin/ruff check .    # pyflakes, import order, bugbear (pyproject.toml [tool.ruff])
	$(VENV)/bin/mypy            # the packages' types (pyproject.toml [tool.mypy])
	$(PY) -m pytest -q tests

bench: $(STAMP)
	$(PY) -m benchmarks.pix2pix_cpu

# what benchmarks/gpu_check.py needs beyond torch for its Trainer sections (pure Python, .venv's versions), to
# carry there: PYTHONPATH=.:.gpu-deps python3 -m benchmarks.gpu_check (BENCHMARKS.md, "GPU")
gpu-deps: $(STAMP)
	rm -rf .gpu-deps
	$(PY) -m pip install -q --no-deps --target .gpu-deps \
		torchmetrics==$$($(PY) -c "import importlib.metadata as m; print(m.version('torchmetrics'))") \
		lightning-utilities==$$($(PY) -c "import importlib.metadata as m; print(m.version('lightning-utilities'))")

clean:
	rm -rf $(VENV) demo runs .gpu-deps
