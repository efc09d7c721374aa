#!/usr/bin/env bash
# Creates (once) and activates the openseg virtual environment, then installs openseg and its
# plugins into it. Idempotent: a second run with nothing changed takes a few seconds.
#
# Source it (`source scripts/setup_env.sh`) or run it. Environment knobs:
#   OPENSEG_HOME     cache root (default ~/.cache/openseg): venv + the mmcv wheel cache
#   OPENSEG_VENV     the virtual environment (default $OPENSEG_HOME/venv-py311-torch$TORCH_VERSION)
#   OPENSEG_PYTHON   interpreter used to create the venv (default python3.11, else python3)
#   FORCE_CUDA=1     build mmcv's CUDA ops too (on a machine with nvcc and a GPU)
set -euo pipefail

TORCH_VERSION=${TORCH_VERSION:-2.14.1}
TORCHVISION_VERSION=${TORCHVISION_VERSION:-0.29.1}
MMCV_VERSION=2.1.0
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OPENSEG_HOME=${OPENSEG_HOME:-$HOME/.cache/openseg}
OPENSEG_VENV=${OPENSEG_VENV:-$OPENSEG_HOME/venv-py311-torch$TORCH_VERSION}
OPENSEG_PYTHON=${OPENSEG_PYTHON:-$(command -v python3.11 || command -v python3)}
MMCV_FLAVOUR=cpu
[ "${FORCE_CUDA:-0}" = "1" ] && MMCV_FLAVOUR=cuda
WHEEL_CACHE=$OPENSEG_HOME/wheels/mmcv-$MMCV_VERSION-torch$TORCH_VERSION-$MMCV_FLAVOUR

log() { printf '[openseg setup] %s\n' "$*" >&2; }

if [ ! -x "$OPENSEG_VENV/bin/python" ]; then
  log "creating virtual environment $OPENSEG_VENV"
  mkdir -p "$(dirname "$OPENSEG_VENV")"
  # Complete only once the stack stamp below is written; a broken half is finished next run.
  "$OPENSEG_PYTHON" -m venv "$OPENSEG_VENV"
fi
# shellcheck disable=SC1091
source "$OPENSEG_VENV/bin/activate"
PIP="python -m pip --disable-pip-version-check -q"

# The third-party stack, pinned; reinstalled only when this block changes.
stack_stamp=$OPENSEG_VENV/.openseg-stack
stack_spec="torch==$TORCH_VERSION torchvision==$TORCHVISION_VERSION mmengine==0.10.7 mmcv==$MMCV_VERSION/$MMCV_FLAVOUR mmdet==3.3.0 open_clip_torch diffusers pycocotools pycocoevalcap pluggy scipy transformers peft pytest panopticapi-lite"
if [ "$(cat "$stack_stamp" 2>/dev/null)" != "$stack_spec" ]; then
  log "installing torch $TORCH_VERSION, torchvision $TORCHVISION_VERSION (about a minute)"
  $PIP install "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
  # mmcv 2.1.0's setup.py imports pkg_resources, gone from setuptools >= 70.
  $PIP install "setuptools<70" wheel ninja "mmengine==0.10.7"

  if ! ls "$WHEEL_CACHE"/mmcv-*.whl >/dev/null 2>&1; then
    # mmdet 3.3.0 needs mmcv < 2.2, which PyPI ships only as an sdist; torch >= 2.14 headers
    # need C++20 while mmcv's setup.py pins c++14/17. The wheel is cached per torch version
    # because pip's own cache would silently reuse a wheel built against another torch.
    log "building mmcv $MMCV_VERSION with compiled ops ($MMCV_FLAVOUR; about 8 minutes on 2 cores, once)"
    build=$(mktemp -d)
    trap 'rm -rf "$build"' EXIT
    $PIP download --no-deps --no-binary :all: "mmcv==$MMCV_VERSION" -d "$build"
    tar -xzf "$build"/mmcv-$MMCV_VERSION.tar.gz -C "$build"
    sed -i -E "s/-std=c\+\+1[47]/-std=c++20/g" "$build/mmcv-$MMCV_VERSION/setup.py"
    MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} $PIP wheel --no-build-isolation --no-deps \
      -w "$build/dist" "$build/mmcv-$MMCV_VERSION"
    mkdir -p "$WHEEL_CACHE.partial"
    cp "$build"/dist/mmcv-*.whl "$WHEEL_CACHE.partial/"
    rm -rf "$WHEEL_CACHE" && mv "$WHEEL_CACHE.partial" "$WHEEL_CACHE"
  fi
  $PIP install --no-deps "$WHEEL_CACHE"/mmcv-*.whl
  # pycocoevalcap: COCO's caption scorers (BLEU, CIDEr); a 100 MB wheel, mostly Java tools that
  # openseg never runs.
  $PIP install "mmcv==$MMCV_VERSION" "mmdet==3.3.0" open_clip_torch diffusers pycocotools \
    pycocoevalcap pluggy scipy transformers peft pytest "torch==$TORCH_VERSION" \
    "torchvision==$TORCHVISION_VERSION"
  # panopticapi (COCO's PQ code, used by mmdet's panoptic loader and metric) is not on PyPI;
  # this repackaging pins numpy<2 for no reason of its code, which needs only numpy and PIL.
  $PIP install --no-deps "panopticapi-lite==0.2.0"
  python -c "import mmcv.ops, mmdet, open_clip, diffusers, pycocoevalcap.cider.cider" \
    || { log "the stack does not import; delete $OPENSEG_VENV and run again"; exit 1; }
  echo "$stack_spec" > "$stack_stamp"
fi

# pytest-xdist: scripts/test.sh runs the suite on every core. Checked on its own so that an
# environment made before it was added gets it without reinstalling the stack.
if ! python -c "import xdist" 2>/dev/null; then
  log "installing pytest-xdist"
  $PIP install "pytest-xdist==3.8.0"
fi

# openseg and its plugins, editable from this checkout (cheap; repeated when the checkout moves).
src_stamp=$OPENSEG_VENV/.openseg-src
src_spec="$REPO_ROOT $(cat "$REPO_ROOT"/pyproject.toml "$REPO_ROOT"/plugins/*/pyproject.toml 2>/dev/null | cksum || true)"
if [ "$(cat "$src_stamp" 2>/dev/null)" != "$src_spec" ]; then
  log "installing openseg and its plugins from $REPO_ROOT"
  args=(-e "$REPO_ROOT")
  for p in "$REPO_ROOT"/plugins/*/pyproject.toml; do
    if [ -f "$p" ]; then args+=(-e "$(dirname "$p")"); fi
  done
  $PIP install --no-deps --no-build-isolation "${args[@]}"
  echo "$src_spec" > "$src_stamp"
fi
