#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: builds robustify with `--features cuda` and runs the GPU
# tests (tests/gpu.rs: the denoiser and a certificate agree with the CPU's). Uses the CUDA
# toolkit already installed (CUDA_HOME, /usr/local/cuda, or nvcc on PATH), else installs
# the compiler and the libraries candle links (cuBLAS, cuRAND, NVRTC) from PyPI into .cuda/.
# Without a GPU it says so and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu-check: no NVIDIA GPU here; nothing to run (CI type-checks the cuda build)"
    exit 0
fi
nvidia-smi -L
if [ -z "${CUDA_HOME:-}" ]; then
    if [ -x /usr/local/cuda/bin/nvcc ]; then
        export CUDA_HOME=/usr/local/cuda
    elif command -v nvcc >/dev/null; then
        CUDA_HOME="$(dirname "$(dirname "$(command -v nvcc)")")"
        export CUDA_HOME
    else
        eval "$(scripts/install-cuda.sh)"
        PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check \
            --no-deps --target .cuda "nvidia-cublas==13.*" "nvidia-curand==10.*" \
            "nvidia-cuda-nvrtc==13.4.*"
    fi
fi
export PATH="$CUDA_HOME/bin:$PATH"
# Where the linker and the loader find libcuda (the driver's), cuBLAS, cuRAND and NVRTC.
libs="$CUDA_HOME/lib64:$CUDA_HOME/lib"
for d in .cuda/nvidia/cu13/lib; do [ -d "$d" ] && libs="$libs:$(cd "$d" && pwd)"; done
export LIBRARY_PATH="$libs:${LIBRARY_PATH:-}" LD_LIBRARY_PATH="$libs:${LD_LIBRARY_PATH:-}"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d .)}"

cargo test --release --features cuda --test integration gpu -- --nocapture
cargo build --release --features cuda
target/release/robustify --device cuda denoisers list
