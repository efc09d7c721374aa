#!/usr/bin/env bash
# The main job: generate `shapes`, build the small CLIP once, train the tiny reference model on
# it (CPU, ~12 minutes on a fresh machine, ~7 once the CLIP is cached),
# evaluate PQ / mIoU / mask AP on the validation split, and write overlays of a few images.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_env.sh
CONFIG=openseg_core::reference/ovseg_tiny_shapes.py
WORK_DIR=${WORK_DIR:-work_dirs/ovseg_tiny_shapes}
DATA=data/shapes

if [ ! -f "$DATA/shapes.json" ]; then
  echo "== generating the shapes dataset into $DATA"
  openseg shapes "$DATA"
fi
echo "== the small CLIP trained on shapes (built once into \$OPENSEG_HOME/pretrained, ~5 min)"
openseg pretrain-clip
echo "== training $CONFIG (progress every 20 iterations)"
python tools/train.py "$CONFIG" --work-dir "$WORK_DIR" "$@"
CKPT=$(cat "$WORK_DIR/last_checkpoint")
echo "== evaluating $CKPT on shapes val"
python tools/test.py "$CONFIG" "$CKPT" --work-dir "$WORK_DIR" --show-dir overlays
echo "== open-vocabulary split (held-out classes diamond and star added; PQ_held_out scores them alone)"
python tools/test.py "$CONFIG" "$CKPT" --work-dir "$WORK_DIR/val_open" --cfg-options \
  test_dataloader.dataset.ann_file=annotations/panoptic_val_open.json \
  'test_dataloader.dataset.exclude_classes=[]' \
  test_dataloader.dataset.data_prefix.img=images/val_open/ \
  test_dataloader.dataset.data_prefix.seg=annotations/panoptic_val_open/ \
  "test_evaluator.0.ann_file=$DATA/annotations/panoptic_val_open.json" \
  "test_evaluator.0.seg_prefix=$DATA/annotations/panoptic_val_open/" \
  "test_evaluator.2.ann_file=$DATA/annotations/instances_val_open.json"
echo "== overlays: $(ls -d "$WORK_DIR"/*/overlays | tail -1)"
