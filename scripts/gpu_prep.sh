#!/bin/sh
# Prepare what a GPU session carries to the device machine (which has torch but no
# internet): CIFAR-10 and the wheels resbench needs beyond torch, in the ignored .gpu/.
# Then, with the device tool, the steps of scripts/gpu_owed.sh and scripts/gpu_sweep.sh.
set -eu
cd "$(dirname "$0")/.."
mkdir -p .gpu/data .gpu/wheels
cp -r ../shared/data/cifar10-jpeg .gpu/data/
.venv/bin/pip download -q --no-deps -d .gpu/wheels typer rich submitit cloudpickle click shellingham \
    markdown-it-py mdurl pygments typing-extensions
du -sh .gpu
