#!/usr/bin/env bash
# Installs NVIDIA's CUDA compiler and headers from PyPI into a folder of the repo (default
# `.cuda/`, git-ignored): no GPU, no root, no system package. Enough to build robustify's
# `cuda` feature (`cargo check --features cuda`); running it needs a GPU and its driver.
#
#   scripts/install-cuda.sh            # installs (or finds) the toolkit, prints the exports
#   eval "$(scripts/install-cuda.sh)"  # … and sets them in this shell
#
# CUDA 13 is the first release whose PyPI wheels carry `nvcc` itself (the cu12 wheels ship
# ptxas and libdevice only). The wheels share one tree, nvidia/cu13 (bin, nvvm, include),
# which nvcc's own nvcc.profile finds relative to itself.
set -euo pipefail

dest="${1:-.cuda}"
version=13.4.92 # cudarc 0.19 (candle 0.11) knows CUDA up to 13.4
cccl=13.3.5.0.6 # the newest CCCL (headers) on PyPI for CUDA 13.4
top="$dest/nvidia/cu13"

if [ ! -x "$top/bin/nvcc" ]; then
    echo "installing the CUDA $version compiler and headers into $dest (about 200 MB)" >&2
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$dest" \
        "nvidia-cuda-nvcc==$version" "nvidia-cuda-crt==$version" \
        "nvidia-cuda-runtime==$version" "nvidia-nvvm==$version" \
        "nvidia-cuda-cccl==$cccl" >&2
fi
top="$(cd "$top" && pwd)"
"$top/bin/nvcc" --version >&2
# Without a GPU, say which one to compile the fixed kernels for (the H200: sm_90).
echo "export CUDA_HOME=$top CUDA_PATH=$top PATH=$top/bin:\$PATH CUDA_COMPUTE_CAP=\${CUDA_COMPUTE_CAP:-90}"
