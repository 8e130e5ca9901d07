# Two commands for a new user: `make demo` and `make test` (see README.md).
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
# torch: the build already on this machine's disk when pip's find-links hold one (a CPU-only
# machine can hold a CPU build there: no GBs of CUDA packages), whatever its version; else the registry's.
# torchvision: the release made for that torch. pyproject.toml asks only for ranges.
TORCH_VERSION = $(BIN)/python -c 'from importlib.metadata import version; print(version("torch").split("+")[0])'

.PHONY: install demo test golden bench clean slurm

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --no-index --no-deps torch 2>/dev/null \
	  && echo "torch: the build on this machine's disk" || $(BIN)/pip install -q torch
	$(BIN)/pip install -q "torch==$$($(TORCH_VERSION))" torchvision
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/.installed

# What a new user runs first: CIFAR-10 fetched if none is found (the original, 163 MB, into
# ~/.cache/resbench/data: see README, "Data"), before anything else so that a machine without it stops
# at once with what to do; then the committed evidence (runs of the paper's recipe at compressed budgets
# in reports/runs/, see README) rendered again from its run directories, about 1.5 minutes; then the
# complexity table; ResNet-20 and its plain twin trained for 200 iterations of the paper's recipe on
# the real CIFAR-10 (the demo preset), side by side; and the Table 6, Fig. 6 and Fig. 7 reports of those.
EVIDENCE_REPORTS := --table 6 --figure 1 --figure 6 --figure 7
DEMO_REPORTS := --table 6 --figure 6 --figure 7
demo: install
	$(BIN)/resbench data fetch --if-missing
	@if ls reports/runs/*/summary.json >/dev/null 2>&1; then \
	  $(BIN)/resbench report $(EVIDENCE_REPORTS) --runs reports/runs --out reports/demo/evidence \
	  && echo "First, the committed evidence, regenerated from reports/runs/: reports/demo/evidence/README.md"; fi
	$(BIN)/resbench flops resnet20 plain20 resnet56 resnet110 resnet50 resnet50_v1.5
	$(BIN)/resbench run figure6 --preset demo --models resnet20,plain20 --jobs 2 --runs runs/demo
	$(BIN)/resbench report $(DEMO_REPORTS) --runs runs/demo --out reports/demo
	@echo "Evidence (compressed budgets, CPU): reports/demo/evidence/README.md, as committed in reports/README.md."
	@echo "Demo runs: runs/demo/, their reports reports/demo/README.md (200 iterations on a CPU: they show the"
	@echo "pipeline learns; they are not the paper's numbers)."

test: install
	$(BIN)/pytest

# Slurm for tests/test_slurm.py, which starts a one-node cluster of its own (tests/slurm_cluster.py): Debian's
# Slurm daemons, client commands and munge, installed as root when missing. No service is started here.
slurm:
	@command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
	  && command -v sbatch >/dev/null && echo "slurm: installed" \
	  || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	       slurmctld slurmd slurm-client munge >/dev/null; }

# Regenerate the complexity golden file deliberately, after an intended model change.
golden: install
	$(BIN)/resbench flops --write-golden tests/golden/complexity.csv

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks
