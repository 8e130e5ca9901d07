#!/bin/sh
# A GPU loan (resbench/loan.py and loan_plan.py say what and why):
#   here:   resbench loan bundle                         # data + commit into .gpu/ (once per data/commit)
#           run(command="sh scripts/gpu_loan.sh", carry=[".gpu"], timeout_s=600)
#   here:   resbench loan collect <files_at>             # runs into reports/runs/, checkpoints into .gpu/carry/
# A loan longer than one 10-minute command, in two commands on the machine while it stays warm (30 s):
#           run(command="PHASE=start DEADLINE_S=720 sh scripts/gpu_loan.sh", carry=[".gpu"], timeout_s=600)
#           run(command="PHASE=finish sh scripts/gpu_loan.sh", carry=[".gpu"], timeout_s=300)   # at once
#   start trains detached (setsid: it outlives the command) until DEADLINE_S and returns after COMMAND_S
#   with what has finished; finish waits for the training's end and brings back the rest. Collect both.
# Rehearsal on a CPU (tests/test_loan.py): DEVICE=cpu PRESET=smoke DEADLINE_S=30 OUT=... sh scripts/gpu_loan.sh
# Training packs every run as it finishes; packing comes again after it whatever happened, so what was
# finished comes back even from a loan cut short.
set -u
OUT=${OUT:?the folder whose files come back}
PHASE=${PHASE:-once}                     # once | start | finish (| detached: start's training)
DEADLINE_S=${DEADLINE_S:-540}            # from now until the runs must have paused
COMMAND_S=${COMMAND_S:-560}              # start: this command returns after this long, the training goes on
DEVICE=${DEVICE:-cuda} PRESET=${PRESET:-paper} STAGES=${STAGES:-1/32,1/16,1} SEEDS=${SEEDS:-3}
MODELS=${MODELS:-} PREFLIGHT=${PREFLIGHT:-50} WORK=${WORK:-/tmp/resbench-loan} PACK_SIZES=${PACK_SIZES:-}
MIN_START=${MIN_START:-90} MARGIN=${MARGIN:-20}   # no run starts with less left; runs pause this early
CALIBRATE=${CALIBRATE-airbench94:10,airbench96:3} CALIBRATE_S=${CALIBRATE_S:-180}  # first; '' for none
STEPS_S=${STEPS_S:-90}                   # after the preflight: deep nets' compiled captured step, measured (0: none)
CONTROL_SEEDS=${CONTROL_SEEDS:-3}        # then ResNet-20 in true fp32 at the full recipe (0: none); then the ladder
PYTHON=${PYTHON:-python3}
cd "$(dirname "$0")/.."
SELF=$PWD/scripts/gpu_loan.sh
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 RESBENCH_COMMIT=$(cat .gpu/commit 2>/dev/null || echo unknown)
export RESBENCH_CACHE=$WORK/cache
start=${START_AT:-$(date +%s)}
deadline=${DEADLINE_AT:-$((start + DEADLINE_S))}
# once: straight into $OUT; start/finish: into $WORK/out, which outlives a command, copied to $OUT
[ "$PHASE" = once ] && BACK=$OUT || BACK=$WORK/out
LOG=$BACK/loan.log

train() {
  timeout -s TERM -k 15 $((deadline + 10 - $(date +%s))) $PYTHON -m resbench loan train --out "$BACK" --deadline "$deadline" \
    --work "$WORK" --device "$DEVICE" --preset "$PRESET" --stages "$STAGES" --seeds "$SEEDS" \
    --preflight-iterations "$PREFLIGHT" --min-start "$MIN_START" --margin "$MARGIN" \
    --calibrate "$CALIBRATE" --calibrate-s "$CALIBRATE_S" --control-seeds "$CONTROL_SEEDS" --steps-s "$STEPS_S" \
    ${MODELS:+--models "$MODELS"} ${PACK_SIZES:+--pack-sizes "$PACK_SIZES"} >> "$LOG" 2>&1
  echo "train ended with $? after $(( $(date +%s) - start ))s" >> "$LOG"
  $PYTHON -m resbench loan pack --out "$BACK" --work "$WORK" >> "$LOG" 2>&1
}

back() {  # $WORK/out into $OUT, each file whole (a half-copied one keeps a hidden name)
  for f in "$BACK"/*; do
    [ -f "$f" ] || continue
    cmp -s "$f" "$OUT/${f##*/}" 2>/dev/null || { cp "$f" "$OUT/.part" && mv "$OUT/.part" "$OUT/${f##*/}"; }
  done
}

status() {
  COLUMNS=160 $PYTHON -m resbench status --out "$WORK/runs" >> "$LOG" 2>&1
  echo "$1 after $(( $(date +%s) - start ))s" >> "$LOG"
}

case $PHASE in
once)
  echo "loan of $(date -u +%FT%TZ): commit $RESBENCH_COMMIT, device $DEVICE, deadline in ${DEADLINE_S}s" > "$LOG"
  [ "$DEVICE" = cuda ] && nvidia-smi --query-gpu=name,driver_version --format=csv,noheader >> "$LOG" 2>&1
  train
  status "loan ended" ;;
start)
  rm -rf "$BACK" "$WORK/trained"; mkdir -p "$BACK"
  echo "loan of $(date -u +%FT%TZ): commit $RESBENCH_COMMIT, device $DEVICE, deadline in ${DEADLINE_S}s," \
       "this command ${COMMAND_S}s (PHASE=start; PHASE=finish brings back the rest)" > "$LOG"
  [ "$DEVICE" = cuda ] && nvidia-smi --query-gpu=name,driver_version --format=csv,noheader >> "$LOG" 2>&1
  echo "$deadline" > "$WORK/deadline"
  START_AT=$start DEADLINE_AT=$deadline PHASE=detached setsid sh "$SELF" < /dev/null > /dev/null 2>&1 &
  until [ -e "$WORK/trained" ] || [ "$(date +%s)" -ge $((start + COMMAND_S)) ]; do sleep 2; back; done
  echo "command 1 returns after $(( $(date +%s) - start ))s; training goes on until its deadline" >> "$LOG" ;;
detached)  # start's training, in its own process session: it outlives the command that started it
  train
  touch "$WORK/trained"
  exit 0 ;;
finish)  # bounded: the training ends by its deadline, and packs within a minute of it
  until [ -e "$WORK/trained" ] || [ "$(date +%s)" -ge $(($(cat "$WORK/deadline" 2>/dev/null || echo 0) + 90)) ]; do
    sleep 2; back
  done
  status "loan ended" ;;
*)
  echo "PHASE is once, start or finish; got $PHASE" >&2; exit 2 ;;
esac
back 2>/dev/null
ls -la "$OUT" >> "$OUT/loan.log"
