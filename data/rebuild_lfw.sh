#!/bin/sh
# Rebuild real LFW (View 2) for `--eval lfw` and benchmarks/synthface_transfer.py from public
# GitHub mirrors, when scikit-learn's own download (from figshare) is not reachable:
#   LFW's deep-funneled images (250 x 250) committed in braun-steven/dfi-tensorflow, and
#   LFW's pairs.txt committed in ddfabbro/lfw (its images are Git LFS pointers, not used).
# LFW has no licence file; its authors distribute it for research. Nothing of it is part of
# this repository: this script fetches it into a folder of your choice.
#
#   sh data/rebuild_lfw.sh [DATA_HOME]        # default: ~/scikit_learn_data
#   export SCIKIT_LEARN_DATA=DATA_HOME        # then: fkd reproduce --eval lfw
#
# LFW_IMAGES_REPO / LFW_PAIRS_REPO (and _COMMIT) override the two repositories, FKD the fkd
# command (default: the project's .venv).
set -eu
DATA_HOME=${1:-$HOME/scikit_learn_data}
IMAGES_REPO=${LFW_IMAGES_REPO:-https://github.com/braun-steven/dfi-tensorflow.git}
IMAGES_COMMIT=${LFW_IMAGES_COMMIT:-0a86d9a0c4e0c208f03766075a0fbaead1374e3e}
PAIRS_REPO=${LFW_PAIRS_REPO:-https://github.com/ddfabbro/lfw.git}
PAIRS_COMMIT=${LFW_PAIRS_COMMIT:-bc9c5b7728d858a7eb03731408ed7a74d25f6193}
FKD=${FKD:-$(dirname "$0")/../.venv/bin/fkd}

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
git clone --quiet --no-checkout --filter=blob:none "$IMAGES_REPO" "$WORK/images"
git -C "$WORK/images" sparse-checkout set --no-cone /data/lfw-deepfunneled/
git -C "$WORK/images" -c advice.detachedHead=false checkout --quiet "$IMAGES_COMMIT"
git clone --quiet --no-checkout --filter=blob:none "$PAIRS_REPO" "$WORK/pairs"
git -C "$WORK/pairs" show "$PAIRS_COMMIT:pairs.txt" > "$WORK/pairs.txt"
$FKD convert lfw2sklearn "$WORK/images/data/lfw-deepfunneled" "$WORK/pairs.txt" "$DATA_HOME"
echo "now: export SCIKIT_LEARN_DATA=$DATA_HOME"
