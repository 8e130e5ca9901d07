# Two commands for a new user: `make demo` and `make test` (see README.md).
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
# torch: the build already on this machine's disk when pip's find-links hold one (the project's
# machines carry a CPU build: no GBs of CUDA packages), whatever its version; else the registry's.
# torchvision: the release made for that torch. pyproject.toml asks only for ranges.
TORCH_VERSION = $(BIN)/python -c 'from importlib.metadata import version; print(version("torch").split("+")[0])'

.PHONY: install demo test golden bench clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --no-index --no-deps torch 2>/dev/null \
	  && echo "torch: the build on this machine's disk" || $(BIN)/pip install -q torch
	$(BIN)/pip install -q "torch==$$($(TORCH_VERSION))" torchvision
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/.installed

# A small real experiment: Table 6's ResNets and Fig. 7's plain nets, 60 iterations each on the
# real CIFAR-10 (CPU, a few minutes), then their reports.
demo: install
	$(BIN)/resbench flops resnet20 resnet56 resnet110 resnet50 resnet50_v1.5
	$(BIN)/resbench run table6 --preset smoke --out runs/demo
	$(BIN)/resbench run figure7 --preset smoke --out runs/demo
	$(BIN)/resbench report --figure 7 --runs runs/demo --out reports/demo
	$(BIN)/resbench report --table 6 --runs runs/demo --out reports/demo
	@echo "Runs are in runs/demo/; reports in reports/demo/ (start with reports/demo/table6/README.md)."

test: install
	$(BIN)/pytest

# Regenerate the complexity golden file deliberately, after an intended model change.
golden: install
	$(BIN)/resbench flops --write-golden tests/golden/complexity.csv

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks
