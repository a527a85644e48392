# regbench: every target sets up .venv (pip, from pyproject.toml) on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
ARGS ?=
EXPERIMENT ?= local_grid
LAUNCHER ?= parallel
SWEEP ?=

.PHONY: help venv test test-fast lint run sweep sweep-status figures tensorboard bench prefetch evaluator clean slurm-up slurm-down slurm-status

help:
	@echo "make test                 the test suite (slow end-to-end tests included)"
	@echo "make test-fast            the tests without the slow ones"
	@echo "make run ARGS='regularizer=sn setting=B'   one run (python benchmark/run.py ARGS)"
	@echo "make sweep [EXPERIMENT=local_grid] [LAUNCHER=parallel|basic|local|slurm] [ARGS=...]   a grid (conf/experiment/)"
	@echo "make figures [SWEEP=multirun/...]   the comparison figures, tables and report.md -> figures/<sweep>/"
	@echo "make sweep-status [SWEEP=multirun/...]   where each run of a sweep stands"
	@echo "make tensorboard [SWEEP=multirun/...] [ARGS=--port=6007]   watch runs live, named method/setting/seed"
	@echo "make bench [ARGS=...]     seconds per generator update of every regularizer, ratios to none"
	@echo "make prefetch [ARGS=...]  (with internet) datasets, Inception weights, real statistics -> data/, cache/"
	@echo "make evaluator            train the Fashion-MNIST classifier behind the fmnist_ metrics"
	@echo "make lint                 ruff"
	@echo "make slurm-up / slurm-down / slurm-status   a single-node SLURM on this machine (root; scripts/slurm-local.sh)"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,wandb]"
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

lint: $(STAMP)
	$(PY) -m ruff check benchmark regularizers analysis tests

run: $(STAMP)
	$(PY) benchmark/run.py $(ARGS)

clean:
	rm -rf outputs multirun .tensorboard .pytest_cache

bench: $(STAMP)
	$(PY) -m benchmark.bench $(ARGS)

# LAUNCHER: parallel (one run per core at once, one torch thread each: joblib), basic (one after another in
# this process), local (submitit, every run its own process at once), slurm
sweep: $(STAMP)
	$(PY) benchmark/run.py -m +experiment=$(EXPERIMENT) $(if $(filter-out basic,$(LAUNCHER)),hydra/launcher=$(LAUNCHER)) $(ARGS)

figures: $(STAMP)
	$(PY) -m analysis.report $(SWEEP) $(ARGS)

sweep-status: $(STAMP)
	$(PY) -m analysis.sweep_status $(SWEEP)

# a tree of links .tensorboard/<method>/<setting>/seed=N -> <run>/tb, rebuilt while TensorBoard runs
tensorboard: $(STAMP)
	$(PY) -m analysis.tensorboard $(SWEEP) $(ARGS)

prefetch: $(STAMP)
	$(PY) -m benchmark.prefetch $(ARGS)

evaluator: $(STAMP)
	$(PY) -m benchmark.fmnist_classifier $(ARGS)

# A real single-node SLURM here (Debian packages, state in $$REGBENCH_SLURM_DIR or /tmp/regbench-slurm):
# the SLURM path of `make sweep LAUNCHER=slurm` and tests/test_slurm.py run against it.
slurm-up:
	scripts/slurm-local.sh up

slurm-down:
	scripts/slurm-local.sh down

slurm-status:
	scripts/slurm-local.sh status
