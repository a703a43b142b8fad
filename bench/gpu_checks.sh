#!/usr/bin/env bash
# The GPU checks, as one run on a lent GPU machine (its python3 has torch; the other packages
# come as wheels in .whl/, see /work/.library/device/README.md). Writes logs and results to $OUT:
#   1. jobs/train_sam.py continues the shipped tiny SAM on the GPU for about TRAIN_SECONDS
#      (steps sized from a short timing run: the cosine schedule needs its length up front);
#   2. bench/patch_generator.py: batched vs official generator, ViT-B and ViT-H (random weights,
#      1024 px, 32x32 grid);
#   3. bench/head_cost.py: ViT-H 32x32 in bf16 + the SAM-CP head, model-only images/s;
#   4. jobs/evaluate_patches.py: oracle PQ of the new tiny SAM on 200 held-out images.
# Each step has its own time limit, so one failing step leaves the others' results.
set -u
OUT=${OUT:-gpu_out}
TRAIN_SECONDS=${TRAIN_SECONDS:-270}
MODELS=${MODELS:-vit_b vit_h}  # generator benchmarks
HEAD_MODEL=${HEAD_MODEL:-vit_h}
BENCH_IMAGES=${BENCH_IMAGES:-8}
EVAL_IMAGES=${EVAL_IMAGES:-200}
RUN=${RUN:-/tmp/sam_tiny_gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD:${PYTHONPATH:-}"

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to $OUT/NAME.log
    local name=$1 limit=$2
    shift 2
    echo "== $name ($(date +%T), limit ${limit}s)"
    timeout -k 10 "$limit" "$@" > "$OUT/$name.log" 2>&1
    echo "   exit $? after ${SECONDS}s of the run"
    grep -v -e WARNING -e "it/s\]" -e "s/it\]" "$OUT/$name.log" | tail -4
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"

sam_args=(--init shipped --batch-size 16 --prompts-per-image 32 --lr 4e-4 --warmup-steps 100)
step train_sam_timing 50 python3 jobs/train_sam.py --output /tmp/sam_timing --steps 40 --train-images 64 \
    "${sam_args[@]}"
rate=$(grep -o '[0-9.]* step/s' "$OUT/train_sam_timing.log" | tail -1 | cut -d' ' -f1)
steps=$(python3 -c "print(max(100, int(${rate:-1} * ($TRAIN_SECONDS - 30) / 100) * 100))")
echo "   ${rate:-?} step/s -> $steps steps"
step train_sam $((TRAIN_SECONDS + 30)) python3 jobs/train_sam.py --output "$RUN" --steps "$steps" \
    --train-images 4000 --checkpoint-every 200 "${sam_args[@]}"
cp "$RUN/sam_tiny.pt" "$RUN/metrics.jsonl" "$OUT/" 2>/dev/null

for model in $MODELS; do
    step "generator_$model" 70 python3 bench/patch_generator.py --sam-model "$model" --sam-checkpoint none \
        --image-size 1024 --images "$BENCH_IMAGES" --batch-size "$BENCH_IMAGES" --points-per-side 32
done
step "head_cost_$HEAD_MODEL" 55 python3 bench/head_cost.py --sam-model "$HEAD_MODEL" --sam-checkpoint none --image-size 1024 \
    --points-per-side 32 --autocast bf16 --images "$((2 * BENCH_IMAGES))" --batch-size "$BENCH_IMAGES"
cp bench/results/patch_generator-*-cuda-*.json bench/results/head_cost-*-gpu.json "$OUT/" 2>/dev/null

if [ -f "$OUT/sam_tiny.pt" ]; then
    step evaluate_patches 75 python3 jobs/evaluate_patches.py --sam-checkpoint "$OUT/sam_tiny.pt" \
        --num-images "$EVAL_IMAGES" --batch-size 8 --output "$OUT/sam_tiny_gpu_patches_val.json"
fi
ls -la "$OUT"
