#!/bin/sh
# resbench on one GPU node without internet (a cluster node with a walltime, a GPU booked for a few
# hours): measure the GPU, calibrate the data, then train a plan, all before one deadline. Every stage
# has its own time cap and writes its results into the results folder as it goes, so a cut at any
# moment (walltime, preemption, Ctrl-C) keeps every finished run and measurement; run it again with
# the same folder and it resumes (finished runs skipped, paused ones resumed from their checkpoint).
#
#   RUNS=/scratch/$USER/resbench DEADLINE=3h RESBENCH_DATA=/scratch/$USER/cifar10 sh scripts/gpu_node.sh
#   sbatch --gres=gpu:1 --time=3:00:00 --signal=B:TERM@120 --wrap \
#       "RUNS=/scratch/$USER/resbench DEADLINE=2h55m sh scripts/gpu_node.sh"
#
# The node has no internet: bring CIFAR-10 (`resbench data fetch` where there is a network, then copy
# the folder; RESBENCH_DATA names it) and a python with torch, torchvision and resbench's dependencies
# (the check below says what is missing). A source tree copied without .git says its commit with
# RESBENCH_COMMIT=<sha>. Afterwards `resbench runs export` archives the results for the machine where
# reports are built (docs/clusters.md: "Moving results between machines").
#
# Settings (environment):
#   RUNS       results folder                                    (runs)
#   DEADLINE   the whole job: a duration (3h, 90m) or an end time (14:30, 2026-12-03T14:30)   (1h)
#   TUNE       time cap of `resbench tune`; 0 skips it           (10m)
#   CALIBRATE  `resbench calibrate`'s plan; empty skips it        (airbench94:10 airbench96:3)
#   CALIBRATE_TIME  its time cap                                 (15m)
#   PLAN       the experiment to train until the deadline         (ladder: Table 6 / Fig. 6 nets, 1/32 -> 1)
#   RUN_ARGS   more options of `resbench run`, e.g. "--seeds 1"   ()
#   DEVICE     auto, cuda, cuda:N or cpu (a rehearsal)            (auto)
set -u
RUNS=${RUNS:-runs} DEADLINE=${DEADLINE:-1h} TUNE=${TUNE:-10m} CALIBRATE_TIME=${CALIBRATE_TIME:-15m}
CALIBRATE=${CALIBRATE-airbench94:10 airbench96:3} PLAN=${PLAN:-ladder} RUN_ARGS=${RUN_ARGS:-}
DEVICE=${DEVICE:-auto} PYTHON=${PYTHON:-python3}
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
mkdir -p "$RUNS" || exit 2
LOG=$RUNS/gpu-node.log
say() { echo "[$(date -u +%FT%TZ)] $*" | tee -a "$LOG"; }

# What the node's python must have (fvcore, papermill, jupyter and submitit are for reports and
# launchers elsewhere: training does without them).
$PYTHON - <<'PY' || exit 2
import importlib.util, sys
need = ("torch", "torchvision", "numpy", "typer", "rich", "pandas")
missing = [m for m in need if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"this python lacks {', '.join(missing)}: install them (or `pip install -e .` of this tree) "
             "from a wheelhouse or a package mirror the node can reach")
PY

# One end for every stage: a stage left with nothing is skipped, the plan always gets the rest.
END=$($PYTHON -c "import sys; from resbench.sweep.durations import parse_deadline; \
print(parse_deadline(sys.argv[1]).isoformat(timespec='seconds'))" "$DEADLINE") || exit 2
left() { $PYTHON -c "import sys, datetime as d; \
print(max(0, int((d.datetime.fromisoformat(sys.argv[1]) - d.datetime.now()).total_seconds())))" "$END"; }
cap() {  # the smaller of a stage's cap and a fifth of the time left, in seconds ("" when nothing is left)
  $PYTHON -c "import sys; from resbench.sweep.durations import parse_duration; \
s = min(parse_duration(sys.argv[1]), int(sys.argv[2]) // 5); print(f'{s}s' if s >= 30 else '')" "$1" "$(left)"
}
trap 'say "stopped by a signal: run again with RUNS=$RUNS to resume"; exit 143' TERM INT
say "gpu node: $(hostname), device $DEVICE, results in $RUNS, until $END"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version --format=csv,noheader >> "$LOG" 2>&1

if [ "$TUNE" != 0 ] && limit=$(cap "$TUNE") && [ -n "$limit" ]; then
  say "tune: at most $limit"
  $PYTHON -m resbench tune --device "$DEVICE" --time-limit "$limit" >> "$LOG" 2>&1 || say "tune ended with $?"
fi
if [ -n "$CALIBRATE" ] && limit=$(cap "$CALIBRATE_TIME") && [ -n "$limit" ]; then
  say "calibrate $CALIBRATE: at most $limit"
  # shellcheck disable=SC2086  (a plan is several words)
  $PYTHON -m resbench calibrate $CALIBRATE --runs "$RUNS" --time-limit "$limit" >> "$LOG" 2>&1 \
    || say "calibrate ended with $? (it needs a CUDA GPU and airbench; the plan goes on)"
fi
say "run $PLAN until $END"
# shellcheck disable=SC2086
{ $PYTHON -m resbench run "$PLAN" --runs "$RUNS" --device "$DEVICE" --deadline "$END" --quiet $RUN_ARGS; \
  echo $? > "$RUNS/.gpu-node-status"; } 2>&1 | tee -a "$LOG"
status=$(cat "$RUNS/.gpu-node-status"); rm -f "$RUNS/.gpu-node-status"
$PYTHON -m resbench status --runs "$RUNS" >> "$LOG" 2>&1
say "done (run ended with $status); the same command resumes what is paused"
exit $status
