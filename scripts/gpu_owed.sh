#!/bin/sh
# The GPU measurements the open issues owe, on the device machine (see scripts/gpu_prep.sh),
# one step per call so that each stays inside a call's 10 minutes:
#   run(command="sh scripts/gpu_owed.sh cifar", carry=[".gpu"])      # issue 4, ~6 min
#   run(command="sh scripts/gpu_owed.sh jobs", carry=[".gpu"])       # issue 6, ~8 min
#   run(command="sh scripts/gpu_owed.sh imagenet", carry=[".gpu"])   # issue 8, ~4 min
#   run(command="sh scripts/gpu_owed.sh fuse", carry=[".gpu"])       # fused seeds vs one run vs --jobs
# Results go to $OUT (JSON and a log); bring them back and commit them under reports/gpu/.
set -u
STEP=${1:?which step: cifar, jobs, imagenet or fuse}
pip install -q --no-index --find-links .gpu/wheels typer rich submitit cloudpickle >/dev/null
# the bare checkout needs no build tools; compiled kernels are reused while the machine stays warm
export RESBENCH_DATA=.gpu/data PYTHONPATH=. PYTHONUNBUFFERED=1 TORCHINDUCTOR_CACHE_DIR=$PWD/.gpu-state/inductor
resbench() { python -m resbench "$@"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
case "$STEP" in
  cifar)  # issue 4: plain loop vs resbench's loop, and the torch.compile mode
    for mode in reduce-overhead max-autotune-no-cudagraphs; do
      resbench bench cifar --models resnet20,resnet56,resnet110 --compile-mode "$mode" \
        --out "$OUT/bench_cifar_$mode.json" 2>&1 | tee -a "$OUT/bench_cifar.log"
    done  # and the two BN halves in one forward (Engine.one_forward): the default if faster
    resbench bench cifar --models resnet20,resnet56,resnet110 --one-forward \
      --out "$OUT/bench_cifar_one_forward.json" 2>&1 | tee -a "$OUT/bench_cifar.log" ;;
  jobs)  # issue 6: trainings packed on one GPU
    resbench bench jobs --models resnet20,resnet56 --jobs 1,2,4,8 --iterations 2000 \
      --out "$OUT/bench_jobs.json" 2>&1 | tee "$OUT/bench_jobs.log" ;;
  fuse)  # fused multi-run training: choose runner.FUSE_AUTO from it
    resbench bench fuse --models resnet20,resnet56,resnet110 --fuse 1,2,4,8 --iterations 500 \
      --out "$OUT/bench_fuse.json" 2>&1 | tee "$OUT/bench_fuse.log" ;;
  imagenet)  # issue 8: PIL workers vs nvJPEG on the GPU, each model alone, ResNet-50 end to end
    resbench bench imagenet --images 4000 --out "$OUT/bench_imagenet.json" 2>&1 | tee "$OUT/bench_imagenet.log" ;;
  *) echo "unknown step $STEP: cifar, jobs, imagenet or fuse" >&2; exit 2 ;;
esac
