#!/usr/bin/env bash
# Builds the `cuda` feature without a GPU: clippy (a full type-check, -D warnings) of every
# crate and target with candle's CUDA backend on, after nvcc has compiled candle's CUDA
# kernels — the PTX modules every op of `--device cuda` runs (affine, binary, cast, conv,
# fill, indexing, quantized, reduce, sort, ternary, unary). The compiler and headers come
# from PyPI (scripts/install-cuda.sh). `.ci/run` runs this in place of plain clippy.
#
#   scripts/check-cuda.sh          # as CI: ~2–3 min more than plain clippy on 2 cores
#   scripts/check-cuda.sh --full   # also candle's static GGUF/MoE library (libmoe.a)
#
# Without --full, candle-kernels is built from a copy of its own crate (taken from cargo's
# registry at run time, never committed) whose build script stops after the PTX modules:
# the static library it would go on to compile holds the quantized-LLM matmuls (GGUF
# mmq/mmvq, mixture-of-experts) that robustify never calls, and its 15 template-heavy
# files take ~19 min of nvcc on these 2 cores (70 s each, measured) — more than CI's whole
# budget. A check does not link, so nothing needs the library; a GPU build
# (scripts/gpu-check.sh) compiles it in full.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/install-cuda.sh)"

config=()
if [ "${1:-}" != "--full" ]; then
    manifest=$(cargo metadata --format-version 1 --all-features | python3 -c '
import json, sys
m = json.load(sys.stdin)
print(next(p["manifest_path"] for p in m["packages"] if p["name"] == "candle-kernels"))')
    copy=target/ci-candle-kernels
    rm -rf "$copy"
    mkdir -p target
    cp -r "$(dirname "$manifest")" "$copy"
    python3 - "$copy/build.rs" <<'PY'
import sys
path = sys.argv[1]
text = open(path).read()
anchor = "    bindings.write(&ptx_path)?;\n"
if text.count(anchor) != 1:
    sys.exit(f"check-cuda: {path} changed upstream; update scripts/check-cuda.sh")
text = text.replace(anchor, anchor + "    return Ok(()); // check-cuda: PTX only\n    #[allow(unreachable_code)]\n")
open(path, "w").write(text)
PY
    config=(--config "patch.crates-io.candle-kernels.path=\"$copy\"")
    # The patch re-resolves Cargo.lock; put it back afterwards.
    cp Cargo.lock target/ci-Cargo.lock
    trap 'cp target/ci-Cargo.lock Cargo.lock' EXIT
fi
# (`--config` after `clippy`: cargo-clippy runs `cargo check` with its own arguments.)
CUDAFORGE_THREADS=2 cargo clippy "${config[@]}" --workspace --all-targets \
    --features robustify/cuda -- -D warnings
