#!/bin/sh
# Issue 7: one slice (under 10 minutes) of the full Table 6 / Figures 1, 6, 7 sweep on the
# device machine. Runs checkpoint and stop at the time limit; the next slice resumes them
# while the machine is still warm (call again within its idle time), else they start over.
#   run(command="sh scripts/gpu_sweep.sh", carry=[".gpu"])     # after scripts/gpu_prep.sh
# The small result files (no checkpoints) come back as $OUT/runs.tgz: unpack into
# reports/runs/ here, then `resbench report --table 6 --runs reports/runs`.
set -u
pip install -q --no-index --find-links .gpu/wheels typer rich submitit cloudpickle >/dev/null
export RESBENCH_DATA=.gpu/data PYTHONPATH=. PYTHONUNBUFFERED=1
EXPERIMENT=${EXPERIMENT:-table6} JOBS=${JOBS:-4} MINUTES=${MINUTES:-8} SEEDS=${SEEDS:-1}
python -m resbench run "$EXPERIMENT" --preset paper --seeds "$SEEDS" --jobs "$JOBS" --time-limit "$MINUTES" \
  --out .gpu/runs -q 2>&1 | tee "$OUT/sweep.log"
python -m resbench status "$EXPERIMENT" --out .gpu/runs 2>&1 | tee -a "$OUT/sweep.log"
tar -C .gpu -czf "$OUT/runs.tgz" --exclude='*.pt' --exclude='*.tmp' --exclude='.lock' runs
