#!/usr/bin/env bash
# The CPU figures of BENCHMARKS.md: about 25 minutes on the 2-core build machine when it is quiet, much longer when
# it is shared. Writes bench/results/*_cpu*.{json,md}. Check `uptime` first: a load average above ~2.5 on 2 cores
# means other work competes; the times are then inflated, and 1 thread beats 2 (the results record the load).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
export MALLOC_MMAP_THRESHOLD_=17179869184 MALLOC_TRIM_THRESHOLD_=17179869184
echo "MALLOC_MMAP_THRESHOLD_=$MALLOC_MMAP_THRESHOLD_ MALLOC_TRIM_THRESHOLD_=$MALLOC_TRIM_THRESHOLD_"
uptime
for threads in 1 2; do
    "$PYTHON" bench/segmentation_e2e.py --device cpu --presets tiny,small,base --repeats 3 --budget-s 100 --no-real \
        --threads "$threads" --name "segmentation_e2e_cpu_${threads}thread"
done
"$PYTHON" bench/segmentation_e2e.py --device cpu --presets tiny,base --repeats 1 --no-real --overlap 0.5 \
    --name segmentation_e2e_cpu_overlap50
"$PYTHON" bench/segmentation_e2e.py --device cpu --presets small --repeats 1 --name segmentation_e2e_cpu_real
if [ -d demo-output/model ]; then  # what --overlap 0.25 costs in accuracy, with the model `make demo` trains
    cases=(demo-output/unseen Resources/SampleData)
    real=${EMIM_BRATS_MINI:-../shared/data/brats-gli-mini}
    [ -d "$real" ] && cases+=("$real")
    "$PYTHON" bench/overlap_accuracy.py --model demo-output/model --overlaps 0.5,0.25 "${cases[@]}"
fi
"$PYTHON" bench/pretrain_throughput.py --device cpu --preset tiny --batch 2 --steps 5 --warmup 2 --data-batches 5 \
    --threads 1 --name pretrain_throughput_cpu_tiny64_1thread
"$PYTHON" bench/scaling.py --device cpu --preset tiny --sizes 96,128,192x192x144 --batches 1,2,4 --steps 3 \
    --warmup 1 --threads 1
uptime
cat bench/results/*_cpu*.md
