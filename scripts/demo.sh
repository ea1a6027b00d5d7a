#!/usr/bin/env bash
# The main job on the embedded default: ingest COCO-mini into a local collection, then search it.
set -euo pipefail
DATASETS="${DATASETS:-../shared/datasets}"
COCO="$DATASETS/coco_mini"
[ -d "$COCO" ] || { echo "demo: $COCO not found; set DATASETS=/path/to/datasets" >&2; exit 2; }

if [ -z "${PIXSEEK_CLIP_MODEL:-}" ]; then
  if python -c "import socket; socket.create_connection(('huggingface.co', 443), timeout=3)" 2>/dev/null; then
    echo "demo: using the default pretrained model (downloaded from the Hugging Face Hub)"
  else
    model_dir="$PIXSEEK_DATA_DIR/models/random-ViT-B-32"
    [ -f "$model_dir/open_clip_config.json" ] || pixseek models random "$model_dir" --arch ViT-B-32 >/dev/null
    export PIXSEEK_CLIP_MODEL="local-dir:$model_dir"
    echo "demo: no network and no PIXSEEK_CLIP_MODEL: using ViT-B-32 with RANDOM weights."
    echo "demo: the pipeline runs for real, but rankings are meaningless. For real results set"
    echo "demo: PIXSEEK_CLIP_MODEL=local-dir:/path/to/open_clip_model_dir (see README)."
  fi
fi
echo "demo: data dir $PIXSEEK_DATA_DIR"
pixseek ingest "$COCO" --labels "$COCO/labels.jsonl" --collection coco
pixseek collections
if pixseek search --help >/dev/null 2>&1; then
  pixseek search "a dog playing in the snow" --collection coco --limit 5
  pixseek search "a kitchen" --collection coco --where "label=oven" --limit 3
fi
