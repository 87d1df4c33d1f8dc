#!/usr/bin/env bash
# Every GPU measurement of issue 7 in one run: about 5 minutes on one H100 (each step has a time cap; the total
# stays under 8 minutes). Writes bench/results/*_cuda*.{json,md} and prints the Markdown tables at the end.
#
#   bash bench/run_gpu.sh            # PYTHON=/path/to/python to use another interpreter
#
# Needs a CUDA build of torch plus the project's dependencies (monai, nibabel, nilearn for the sample case,
# safetensors, psutil). The full-size case comes from `emim make-sample --size full`, so no data set is needed.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export MALLOC_MMAP_THRESHOLD_=17179869184 MALLOC_TRIM_THRESHOLD_=17179869184
echo "MALLOC_MMAP_THRESHOLD_=$MALLOC_MMAP_THRESHOLD_ MALLOC_TRIM_THRESHOLD_=$MALLOC_TRIM_THRESHOLD_"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
"$PYTHON" -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU visible to torch'; print(torch.cuda.get_device_name(0))" || exit 1
start=$(date +%s)
failed=()
step() {  # step NAME SECONDS COMMAND...: run with a time cap, keep going after a failure
    local name=$1 cap=$2; shift 2
    echo "== $name (cap ${cap}s) at $(( $(date +%s) - start ))s"
    timeout "$cap" "$@" || failed+=("$name")
}
step "sample case" 40 "$PYTHON" -c "import sys; sys.path.insert(0, '.'); from bench import common; print(common.full_size_case())"
step "segmentation e2e" 150 "$PYTHON" bench/segmentation_e2e.py --device cuda --presets tiny,small,base --repeats 5 --budget-s 20
step "pretraining base 96^3" 180 "$PYTHON" bench/pretrain_throughput.py --device cuda --preset base --crop 96 --batch 32 \
    --steps 10 --warmup 3 --workers 0,8 --data-batch 8 --data-batches 4
step "scaling" 100 "$PYTHON" bench/scaling.py --device cuda --preset base --sizes 96,128,192,240x240x155 \
    --batches 8,16,32,64 --steps 5 --warmup 2
echo "== total $(( $(date +%s) - start ))s; failed: ${failed[*]:-none}"
for f in bench/results/segmentation_e2e_cuda.md bench/results/pretrain_throughput_cuda_*.md bench/results/scaling_cuda_*.md \
         bench/results/pretrain_ddp*_cuda.md; do
    [ -f "$f" ] && cat "$f" && echo
done
[ ${#failed[@]} -eq 0 ]
