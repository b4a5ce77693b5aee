# Two entry points (see README): `make demo` and `make test`. Both create or reuse .venv.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.sparsecc-installed

.PHONY: demo test lint zoo zoo-trained bench gpu-check clean fuzz

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The main job: export the GSC sparse CNN, compile it for the host CPU, run it and compare with onnxruntime.
demo: $(STAMP)
	$(PY) -m sparsecc.examples.demo

test: $(STAMP)
	$(PY) -m pytest -q

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
