#!/usr/bin/env bash
# The GPU checks, as one run on a lent GPU machine (see /work/.library/device/README.md there):
# its python3 has torch; the project's other packages travel in .whl/ as wheels, and Ray as a
# tarball of its installed files without its Java jars, dashboard web build, RLlib and Serve
# (the wheel alone is over the 64 MiB a call may carry). Writes logs and results to $OUT.
# Making .whl/ (git-ignored) on the development machine, Python 3.12 manylinux wheels:
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       -d .whl segment-anything open_clip_torch ftfy wcwidth pycocotools webdataset braceexpand \
#       jsonschema jsonschema-specifications referencing rpds-py
#   pip download (same flags) -d /tmp/ray ray==2.60.0 && mkdir /tmp/ray/site && cd /tmp/ray/site \
#       && unzip -q ../ray-*.whl && rm -rf ray/jars ray/dashboard/client/build ray/rllib ray/serve \
#          ray/llm ray/workflow ray/tests ray/*/tests \
#       && tar cf - . | xz -T2 -6 > "$REPO/.whl/ray-2.60.0-stripped.tar.xz"     (26 MB; REPO: this checkout)
#
#   STEPS="generator_vit_h head_cost" OUT=/tmp/gpu bash bench/gpu_checks.sh
#
# generator_tiny:  bench/patch_generator.py, batched vs official generator on the shipped tiny SAM
#                  (trained weights, real masks, 256 px);
# generator_vit_h: the same for ViT-H (random weights, 1024 px, 32x32 grid), bf16 then fp32;
# head_cost:       bench/head_cost.py, ViT-H 32x32 in bf16 + the SAM-CP head, per-stage and
#                  per-operator profile;
# pipeline:        bench/label_job.py gpu, GPU utilization over a labeling job on one GPU actor.
# Random SAM weights predict IoUs near 0 and no stable mask, so at SAM's default thresholds the
# ViT-H runs keep no mask: they time the encoder and the point-grid decoding, not the upsampling,
# filtering, head and RLE of kept masks. VIT_H_THRESHOLDS can lower the thresholds (e.g.
# "--pred-iou-thresh 0.025 --stability-score-thresh 0": about half of the 3,072 masks per image
# kept), but then the official generator RLE-encodes some 1,500 full-size masks per image on the
# host and 8 images took over 120 s on an H100. The shipped head reads the tiny SAM's 128-channel
# embedding, so the ViT-H runs label with a random head that reads ViT-H's 256 channels.
# Each step has its own time limit, so one failing step leaves the others' results.
set -u
OUT=${OUT:-gpu_out}
STEPS=${STEPS:-"generator_tiny generator_vit_h head_cost pipeline"}
VIT_H_THRESHOLDS=${VIT_H_THRESHOLDS:-}
BENCH_IMAGES=${BENCH_IMAGES:-8}
PIPELINE_IMAGES=${PIPELINE_IMAGES:-192}
mkdir -p "$OUT/logs"

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/*.whl && tar -xJf .whl/ray-*.tar.xz -C /tmp/site || exit 1
export PYTHONUNBUFFERED=1 PYTHONPATH="/tmp/site:$PWD" RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, torchvision, ray; print('torch', torch.__version__, 'torchvision',
torchvision.__version__, 'ray', ray.__version__)"

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to $OUT/logs/NAME.log
    local name=$1 limit=$2
    shift 2
    echo "== $name ($(date +%T), limit ${limit}s)"
    timeout -k 10 "$limit" "$@" > "$OUT/logs/$name.log" 2>&1
    echo "   exit $? after ${SECONDS}s of the run"
    grep -v -e WARNING -e "it/s\]" -e "s/it\]" -e "^\s*$" "$OUT/logs/$name.log" | tail -"${TAIL:-4}"
}
# shellcheck disable=SC2206 # the thresholds are words
random_vit_h=(--sam-model vit_h --sam-checkpoint none --image-size 1024 --points-per-side 32 $VIT_H_THRESHOLDS)

for s in $STEPS; do case $s in
generator_tiny)
    step generator_tiny 60 python3 bench/patch_generator.py --images 16 --batch-size 8 --points-per-side 16 \
        --pred-iou-thresh 0.2 --stability-score-thresh 0.3 ;;
generator_vit_h)
    for dtype in bf16 none; do
        step "generator_vit_h_$dtype" 60 python3 bench/patch_generator.py "${random_vit_h[@]}" \
            --images "$BENCH_IMAGES" --batch-size "$BENCH_IMAGES" --autocast "$dtype"
    done ;;
head_cost)
    TAIL=24 step head_cost_vit_h 60 python3 bench/head_cost.py "${random_vit_h[@]}" --head-checkpoint none \
        --autocast bf16 --images "$((2 * BENCH_IMAGES))" --batch-size "$BENCH_IMAGES" ;;
pipeline)
    TAIL=6 step pipeline_gpu 240 python3 bench/label_job.py gpu "${random_vit_h[@]}" --head-checkpoint none \
        --autocast bf16 --num-images "$PIPELINE_IMAGES" --shard-size 16 --batch-size 8 \
        --workdir /tmp/pipeline_gpu ;;
esac; done
tar -czf "$OUT/results.tgz" bench/results "$OUT/logs" 2>/dev/null
ls -la "$OUT"
