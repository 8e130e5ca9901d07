#!/bin/sh
# The CPU evidence: the paper's CIFAR-10 recipe at compressed budgets, 3 seeds a row, in the
# order that answers the most first. Resumable: run it again and finished runs are skipped,
# paused ones resume where they stopped. SIGTERM (kill -- -PGID) pauses the run in training
# at a checkpoint and ends the sweep. On a 2-core CPU with native bf16: ResNet-20 about 3 minutes
# a run at 1/32 in bf16, ResNet-56 about 8; fp32 about 1.6x longer.
#   setsid nice -n 10 env RUNS=$HOME/resbench-evidence sh scripts/cpu_evidence.sh > evidence.log 2>&1 &
#   resbench status --runs $HOME/resbench-evidence      # progress and ETA
RUNS=${RUNS:-runs/evidence}
RESBENCH=${RESBENCH:-resbench}
trap 'echo "stopped: rerun to resume"; exit 143' TERM INT
run() { echo "== $(date -u +%FT%TZ) $*"; $RESBENCH run figure6 --runs "$RUNS" --quiet --seeds 3 "$@"; }

# precision control: ResNet-20 at 1/32 in bf16 and in fp32
run --budget 1/32 --precision bf16 --models resnet20
run --budget 1/32 --precision fp32 --models resnet20
# Fig. 1, Fig. 6, Fig. 7 and Table 6 at 1/32
run --budget 1/32 --precision bf16 --models plain20,resnet56,plain56
# from which budget does ResNet-56 beat ResNet-20?
run --budget 1/16 --precision bf16 --models resnet20,resnet56
run --budget 1/8 --precision bf16 --models resnet20,resnet56
# the chains of Fig. 6, then ResNet-110 (its warm-up at lr 0.01 included)
run --budget 1/32 --precision bf16 --models plain32,resnet32,plain44,resnet44
run --budget 1/32 --precision bf16 --models resnet110
echo "== $(date -u +%FT%TZ) sweep finished"
