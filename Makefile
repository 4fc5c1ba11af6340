# Everything a fresh machine needs: `make run` (the main job) and `make test` (the tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch first and pinned: a bare `torch` requirement with no torch installed pulls a multi-GB
# CUDA build. Override TORCH for a GPU machine, e.g. make TORCH="torch==2.13.0" install.
TORCH ?= torch==2.13.0
EXTRAS ?= weights,onnxsim,eval,text,report,serve,piper,openvino,qwen,deploy,dev
STAMP := $(VENV)/.installed-$(shell echo "$(TORCH) $(EXTRAS)" | md5sum | cut -c1-8)

.PHONY: install run test test-quick lint browser serve serve-bench benchmark bench bench-baseline clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	$(BIN)/python -m pip install --quiet --no-deps qwen-tts==0.1.1
	touch $@

run: install  ## the main job: the default recipe end to end on the shipped clips
	$(BIN)/speedy run hifigan_v1

lint: install
	$(BIN)/ruff check speedy tests benchmarks

# Timings on the 2-core machine CI uses: the whole suite about 15 min; without the tests marked
# slow (10 s or more each, or the real HiFi-GAN V1 build) about 7 min.
test: lint browser  ## ruff, then the whole test suite (tiny seeded models and the real HiFi-GAN V1)
	@echo "make test: the whole suite takes about 15 minutes on 2 cores (make test-quick: about 7)"
	$(BIN)/pytest -q --durations=10

test-quick: lint  ## the tests not marked slow
	@echo "make test-quick: about 7 minutes on 2 cores"
	$(BIN)/pytest -q -m "not slow" --durations=10

# Debian's Chromium for the test of the `speedy serve` page (skipped where it cannot be installed).
browser:
	@command -v chromium >/dev/null || (apt-get install -y -q chromium >/dev/null 2>&1 || \
	  (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1)) || \
	  echo "note: no chromium (apt-get failed): the page test will be skipped"

SERVE_ARTIFACTS := build/sambert_zh_en/simplify build/hifigan_v1/simplify build/hifigan_v1/quantize

# The default recipe's vocoders (FP32 and mixed INT8) behind the seeded Sambert (built once, then
# reused): two voices to compare on the page at http://127.0.0.1:8000/, and /v1/vocode.
serve: run
	$(BIN)/speedy run sambert_zh_en
	$(BIN)/speedy serve $(SERVE_ARTIFACTS)

serve-bench: run  ## load benchmark -> benchmarks/results/serve_load_cpu.json
	$(BIN)/speedy run sambert_zh_en
	$(BIN)/python benchmarks/serve_load.py

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
