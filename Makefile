# Everything a fresh machine needs: `make run` (the main job) and `make test` (the tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch first and pinned: a bare `torch` requirement with no torch installed pulls a multi-GB
# CUDA build. Override TORCH for a GPU machine, e.g. make TORCH="torch==2.13.0" install.
TORCH ?= torch==2.13.0
EXTRAS ?= weights,onnxsim,eval,text,report,dev
STAMP := $(VENV)/.installed-$(shell echo "$(TORCH) $(EXTRAS)" | md5sum | cut -c1-8)

.PHONY: install run test lint benchmark bench bench-baseline clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

run: install  ## the main job: the default recipe end to end on the shipped clips
	$(BIN)/speedy run hifigan_v1

lint: install
	$(BIN)/ruff check speedy tests benchmarks

test: lint  ## ruff, then the whole test suite (tiny seeded models and the real HiFi-GAN V1)
	$(BIN)/pytest -q --durations=10

benchmark: install  ## issue-2 figures: PyTorch vs ORT RTF and front-end PESQ on the shared clips
	$(BIN)/python benchmarks/hifigan_v1.py

# The default regression benchmark: HiFi-GAN V1 PyTorch, ONNX, simplified ONNX and mixed INT8 on
# the shipped clips, each in its own process, ratios to PyTorch; report in build/bench/index.html.
BASELINE ?= benchmarks/baselines/hifigan_v1_cpu.json
BENCH_ARTIFACTS := $(addprefix build/hifigan_v1/,torch export simplify quantize)

bench: run  ## fails (non-zero) when a ratio or quality figure regressed from $(BASELINE)
	$(BIN)/speedy bench $(BENCH_ARTIFACTS) -o build/bench --force --baseline $(BASELINE)

bench-baseline: run  ## refresh $(BASELINE) from a new run (explicit; review its diff)
	$(BIN)/speedy bench $(BENCH_ARTIFACTS) -o build/bench --force --save-baseline $(BASELINE)

clean:
	rm -rf build .pytest_cache .ruff_cache
