#!/usr/bin/env bash
# Install gsenet on a cluster node (runs inside the Ray container, from cluster/gcp.yaml's setup commands).
#
#   bash cluster/setup_node.sh cpu      # head: CPU torch (it only builds trainers and runs MLflow)
#   bash cluster/setup_node.sh cu128    # GPU workers: CUDA 12.8 torch
#
# torch goes in first from the PyTorch index, so `pip install -e .` keeps it instead of pulling the
# CPU/default wheel from PyPI. Override the pins with TORCH_VERSION=... / TORCH_INDEX_URL=... .
set -euo pipefail

variant="${1:?usage: setup_node.sh cpu|cu128|cu126|...}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
torch_version="${TORCH_VERSION:-2.13.0}"
torch_index="${TORCH_INDEX_URL:-https://download.pytorch.org/whl/${variant}}"

# pesq has no wheel and compiles from source.
if ! command -v gcc >/dev/null 2>&1; then
    sudo apt-get update -qq && sudo apt-get install -y -qq --no-install-recommends build-essential
fi

python -m pip install --quiet --upgrade pip
python -m pip install --quiet "torch==${torch_version}" --index-url "${torch_index}"
python -m pip install --quiet -e "${repo}"

# Report what this node got; a GPU worker without CUDA would burn money training on its CPU.
python - "${variant}" <<'PY'
import sys

import ray
import torch

import gsenet

cuda = torch.cuda.is_available()
gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else []
print(f"gsenet {gsenet.__file__}: torch {torch.__version__}, ray {ray.__version__}, GPUs {gpus}")
if sys.argv[1] != "cpu" and not cuda:
    print("WARNING: CUDA torch installed but no GPU visible: check `nvidia-smi` on the host", file=sys.stderr)
PY
