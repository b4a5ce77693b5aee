# Two entry points (see README): `make demo` and `make test`. Both create or reuse .venv.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.sparsecc-installed

.PHONY: demo test lint zoo zoo-trained bench gpu-check aarch64-env fuzz clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The main job: export the GSC sparse CNN, compile it for the host CPU, run it and compare with onnxruntime.
demo: $(STAMP)
	$(PY) -m sparsecc.examples.demo

# The test suite. As root on Debian/Ubuntu it first installs what the cross-CPU tests need (qemu-user and the
# aarch64 cross compiler, plus an emulated aarch64 Python with TVM under ~/.cache/sparsecc/aarch64); without root
# those tests say why they skip.
# In parallel (pytest-xdist: one worker per logical CPU, at most 4, as each holds a few GB while it compiles);
# tests/conftest.py groups the tests that share a fixture and queues the slowest first (--no-loadscope-reorder
# keeps that order).
test: $(STAMP) aarch64-env
	$(PY) -m pytest -q --durations=25 -n logical --maxprocesses 4 --dist loadgroup --no-loadscope-reorder

# qemu-user, g++-aarch64-linux-gnu and an emulated aarch64 Python 3.11 with TVM's aarch64 wheels (for
# `sparsecc check --mtriple aarch64-linux-gnu`); skipped with a notice where apt or root is missing.
aarch64-env: $(STAMP)
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then PYTHON=$(PY) scripts/setup_aarch64.sh \
	  || echo "aarch64-env: set-up failed (see above); the aarch64 tests will skip"; \
	else echo "aarch64-env: needs root and apt-get; the aarch64 tests will skip"; fi

# Longer fuzzing than the bounded run in `make test` (FUZZ_EXAMPLES cases per fuzz target, fresh seeds).
FUZZ_EXAMPLES ?= 5000
fuzz: $(STAMP)
	SPARSECC_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -q tests/test_fuzz.py --hypothesis-show-statistics

lint: $(STAMP)
	$(VENV)/bin/ruff check .

zoo: $(STAMP)
	$(PY) -m sparsecc.examples.export_zoo --out examples/models/onnx

# Train the GSC architectures on scikit-learn's digits into the user cache (sparsecc evaluate NAME finds them).
zoo-trained: $(STAMP)
	$(PY) -m sparsecc.examples.train_zoo

bench: $(STAMP)
	$(VENV)/bin/sparsecc bench

# On a machine with an NVIDIA GPU (~10 min): driver, 50 runs bitwise, compute-sanitizer, pytest -m gpu, timings
# against TVM's dense CUDA build and onnxruntime-CUDA -> benchmarks/results/cuda.md. Without a GPU: exit 2.
gpu-check: $(STAMP)
	$(PY) -m sparsecc.benchmarks.gpu_check

clean:
	rm -rf build *.egg-info .pytest_cache artifacts
