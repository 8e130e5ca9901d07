#!/bin/sh
# The GPU measurements the open issues owe, on the device machine (see scripts/gpu_prep.sh).
# Results go to $OUT (JSON and logs); bring them back and commit them under reports/gpu/.
# Each step is one `resbench` command, so a cut-off session can rerun the rest.
set -u
pip install -q --no-index --find-links .gpu/wheels typer rich submitit cloudpickle >/dev/null
export RESBENCH_DATA=.gpu/data PYTHONPATH=.  # the bare checkout: no build tools needed there
resbench() { python -m resbench "$@"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
# issue 4: plain loop vs resbench's loop, and the torch.compile mode
for mode in reduce-overhead max-autotune-no-cudagraphs; do
  resbench bench cifar --models resnet20,resnet56,resnet110 --compile-mode "$mode" \
    --out "$OUT/bench_cifar_$mode.json" 2>&1 | tee -a "$OUT/bench.log"
done
# issue 6: trainings packed on one GPU
resbench bench jobs --models resnet20,resnet56 --jobs 1,2,4,8 --iterations 2000 \
  --out "$OUT/bench_jobs.json" 2>&1 | tee -a "$OUT/bench.log"
# issue 8: ImageNet pipeline (PIL workers vs nvJPEG on the GPU), models, ResNet-50 end to end
resbench bench imagenet --images 4000 --out "$OUT/bench_imagenet.json" 2>&1 | tee -a "$OUT/bench.log"
