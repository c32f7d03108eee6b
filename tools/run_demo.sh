#!/usr/bin/env bash
# `make demo`: generate the shapes data, train configs/ssd_demo_shapes.py on the CPU, score it
# COCO-style on the val split and draw the results, all into one work directory.
#
# Usage: bash tools/run_demo.sh [WORK_DIR]        (default: work_dirs/demo)
# Environment (all optional):
#   DEMO_DATA         dataset root (default: data/demo_shapes; generated when absent)
#   DEMO_NUM_TRAIN    training images to generate (default: the generator's, 2000)
#   DEMO_NUM_VAL      val images to generate (default: the generator's, 200)
#   DEMO_CFG_OPTIONS  extra --cfg-options for training and testing, e.g. 'train_cfg.max_iters=40'
#   DEMO_AMP          1 (default): train and test with --amp (bf16 autocast + channels_last where
#                     the CPU computes bf16 natively, float32 otherwise; the log says which);
#                     0: float32 throughout (`make demo AMP=0`)
#   VENV              virtual environment holding the stack and the plugin (default: .venv)
# Running it again on a WORK_DIR that holds an interrupted run resumes that run.
#
# WORK_DIR ends up with: metrics.json and metrics.txt (COCO summary and per-class table),
# curves.png (loss and mAP), predictions/*.png (ground truth | predictions), the checkpoints,
# the training log (<timestamp>/<timestamp>.log) and test.log.
set -euo pipefail

cd "$(dirname "$0")/.."
WORK_DIR=${1:-work_dirs/demo}
VENV=${VENV:-.venv}
PY=$VENV/bin/python
MIM=$VENV/bin/mim
CONFIG=configs/ssd_demo_shapes.py
DATA=${DEMO_DATA:-data/demo_shapes}
DATA=${DATA%/}
START=$(date +%s)
say() { printf '\n[demo %4ss] %s\n' "$(($(date +%s) - START))" "$*"; }

export PYTHONUNBUFFERED=1
# mim imports pkg_resources, whose import warns (setuptools >= 67) in every mim call: the
# notice is about mim's code, not the demo (a filter for these processes only)
export PYTHONWARNINGS="ignore:pkg_resources is deprecated:UserWarning${PYTHONWARNINGS:+,$PYTHONWARNINGS}"
# --data-root moves the datasets and both evaluators' annotation files to $DATA
read -r -a CFG_OPTIONS <<<"${DEMO_CFG_OPTIONS:-}"
OPTIONS=(--data-root "$DATA" ${CFG_OPTIONS[@]+--cfg-options "${CFG_OPTIONS[@]}"})
AMP=()
case ${DEMO_AMP:-1} in
    1) AMP=(--amp) ;;
    0) ;;
    *) echo "DEMO_AMP must be 0 or 1, got '$DEMO_AMP'" >&2; exit 2 ;;
esac

if [[ -f $DATA/annotations/instances_train.json && -f $DATA/annotations/instances_val.json ]]; then
    say "using the demo dataset in $DATA"
else
    say "generating the demo dataset in $DATA"
    "$PY" tools/make_demo_dataset.py --out "$DATA" --seed 0 \
        ${DEMO_NUM_TRAIN:+--num-train "$DEMO_NUM_TRAIN"} ${DEMO_NUM_VAL:+--num-val "$DEMO_NUM_VAL"}
fi

RESUME=()
if [[ -f $WORK_DIR/last_checkpoint ]]; then
    RESUME=(--resume)
    say "resuming the run in $WORK_DIR from $(cat "$WORK_DIR/last_checkpoint")"
fi
say "training $CONFIG on the CPU into $WORK_DIR (progress every 20 iterations; DEMO_AMP=${DEMO_AMP:-1})"
"$MIM" train ssd_plugin "$CONFIG" --gpus 0 --work-dir "$WORK_DIR" "${RESUME[@]}" "${AMP[@]}" "${OPTIONS[@]}"
CHECKPOINT=$(cat "$WORK_DIR/last_checkpoint")

say "scoring $CHECKPOINT on the val split (COCO bbox metric)"
rm -rf "$WORK_DIR/test"
"$MIM" test ssd_plugin "$CONFIG" --gpus 0 --checkpoint "$CHECKPOINT" \
    --work-dir "$WORK_DIR/test" "${AMP[@]}" "${OPTIONS[@]}" 2>&1 | tee "$WORK_DIR/test.log"
cp "$(ls "$WORK_DIR"/test/*/*.json | tail -n 1)" "$WORK_DIR/metrics.json"
# the COCO summary and the per-class table, as printed by CocoMetric
sed -n '/Evaluating bbox/,/bbox_mAP_copypaste/p' "$WORK_DIR/test.log" >"$WORK_DIR/metrics.txt"

say "plotting the curves and drawing predictions"
"$PY" tools/analysis/plot_curves.py "$WORK_DIR" --out "$WORK_DIR/curves.png"
"$PY" tools/analysis/draw_predictions.py "$CONFIG" "$CHECKPOINT" --num 6 \
    --out-dir "$WORK_DIR/predictions" "${OPTIONS[@]}"

MAP=$("$PY" -c "import json, sys; print(json.load(open(sys.argv[1]))['coco/bbox_mAP'])" \
    "$WORK_DIR/metrics.json")
say "done: COCO bbox mAP $MAP on $DATA/val in $(($(date +%s) - START)) s; see $WORK_DIR/" \
    "metrics.txt, curves.png and predictions/"
