#!/bin/sh
# Issue 7: one slice (under 10 minutes) of the full-recipe CIFAR-10 sweep on the device
# machine; call it again until `resbench status` shows every run done.
#   run(command="sh scripts/gpu_sweep.sh", carry=[".gpu"])     # after scripts/gpu_prep.sh
#   EXPERIMENT=table6 SEEDS=1 JOBS=4 MINUTES=8 sh scripts/gpu_sweep.sh   (the defaults; MODELS=resnet20
#   limits it to some rows: issue 4's one full ResNet-20 run)
# Runs checkpoint and stop at the time limit. A machine is given back seconds after a call,
# so the unfinished runs travel: $OUT/resume.tgz holds them with their latest checkpoint;
# copy it to .gpu/resume.tgz here before the next call, which resumes them.
# $OUT/runs.tgz holds every run's small files (no checkpoints): unpack it into reports/runs/
# here, then `resbench report --table 6 --runs reports/runs`.
set -u
pip install -q --no-index --find-links .gpu/wheels typer rich submitit cloudpickle >/dev/null
export RESBENCH_DATA=.gpu/data PYTHONPATH=. PYTHONUNBUFFERED=1 TORCHINDUCTOR_CACHE_DIR=$PWD/.gpu-state/inductor
EXPERIMENT=${EXPERIMENT:-table6} JOBS=${JOBS:-4} MINUTES=${MINUTES:-8} SEEDS=${SEEDS:-1} MODELS=${MODELS:-} FUSE=${FUSE:-auto}
mkdir -p .gpu-state/runs
[ -f .gpu/resume.tgz ] && tar -C .gpu-state/runs -xzf .gpu/resume.tgz
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python -m resbench run "$EXPERIMENT" --preset paper --seeds "$SEEDS" --jobs "$JOBS" --fuse "$FUSE" --time-limit "$MINUTES" \
  ${MODELS:+--models "$MODELS"} --out .gpu-state/runs -q 2>&1 | tee "$OUT/sweep.log"
python -m resbench status "$EXPERIMENT" --out .gpu-state/runs 2>&1 | tee -a "$OUT/sweep.log"
cd .gpu-state/runs
tar -czf "$OUT/runs.tgz" --exclude='*.pt' --exclude='*.tmp' --exclude='.lock' .
unfinished=$(for d in */; do [ -f "$d/checkpoint.pt" ] && [ ! -f "$d/summary.json" -o -n "$(grep -l '"paused"' "$d/summary.json" 2>/dev/null)" ] && echo "${d%/}"; done)
[ -n "$unfinished" ] && tar -czf "$OUT/resume.tgz" --exclude='checkpoint.prev.pt' --exclude='*.tmp' --exclude='.lock' $unfinished
ls -la "$OUT"
