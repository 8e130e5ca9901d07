#!/bin/sh
# A whole GPU loan in one command of at most 9.5 minutes (resbench/loan.py says what and why):
#   here:   resbench loan bundle                         # data + commit into .gpu/ (once per data/commit)
#           run(command="sh scripts/gpu_loan.sh", carry=[".gpu"], timeout_s=600)
#   here:   resbench loan collect <files_at>             # runs into reports/runs/, checkpoints into .gpu/carry/
# Rehearsal on a CPU (tests/test_loan.py): DEVICE=cpu PRESET=smoke DEADLINE_S=30 OUT=... sh scripts/gpu_loan.sh
# Training packs every run as it finishes, and runs under a timeout; packing comes again after it whatever
# happened, so what was finished comes back even from a loan cut short.
set -u
OUT=${OUT:?the folder whose files come back}
DEADLINE_S=${DEADLINE_S:-540}            # from now until the runs must have paused
DEVICE=${DEVICE:-cuda} PRESET=${PRESET:-paper} STAGES=${STAGES:-1/32,1/16,1} SEEDS=${SEEDS:-3}
MODELS=${MODELS:-} PREFLIGHT=${PREFLIGHT:-50} WORK=${WORK:-/tmp/resbench-loan} PACK_SIZES=${PACK_SIZES:-}
MIN_START=${MIN_START:-90} MARGIN=${MARGIN:-20}   # no run starts with less left; runs pause this early
PYTHON=${PYTHON:-python3}
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 RESBENCH_COMMIT=$(cat .gpu/commit 2>/dev/null || echo unknown)
export RESBENCH_CACHE=$WORK/cache
start=$(date +%s)
deadline=$((start + DEADLINE_S))
LOG=$OUT/loan.log
echo "loan of $(date -u +%FT%TZ): commit $RESBENCH_COMMIT, device $DEVICE, deadline in ${DEADLINE_S}s" > "$LOG"
[ "$DEVICE" = cuda ] && nvidia-smi --query-gpu=name,driver_version --format=csv,noheader >> "$LOG" 2>&1
timeout -s TERM -k 15 $((DEADLINE_S + 10)) $PYTHON -m resbench loan train --out "$OUT" --deadline "$deadline" \
  --work "$WORK" --device "$DEVICE" --preset "$PRESET" --stages "$STAGES" --seeds "$SEEDS" \
  --preflight-iterations "$PREFLIGHT" --min-start "$MIN_START" --margin "$MARGIN" \
  ${MODELS:+--models "$MODELS"} ${PACK_SIZES:+--pack-sizes "$PACK_SIZES"} >> "$LOG" 2>&1
echo "train ended with $? after $(( $(date +%s) - start ))s" >> "$LOG"
$PYTHON -m resbench loan pack --out "$OUT" --work "$WORK" >> "$LOG" 2>&1
COLUMNS=160 $PYTHON -m resbench status --out "$WORK/runs" >> "$LOG" 2>&1
ls -la "$OUT" >> "$LOG"
echo "loan ended after $(( $(date +%s) - start ))s" >> "$LOG"
