#!/usr/bin/env bash
# The MSE denoisers the headline tables need (issue 29): photos at σ = 0.5 and 1.0,
# CIFAR-10 at σ = 1.0, each started from the shipped denoiser of the nearest σ. Resumable:
# run it again and each training goes on from its last checkpoint (a finished one is
# skipped). Runs niced, from a copy of the release binary (runs/robustify-train), so that
# a rebuild does not replace the program under it. Logs: runs/<name>.log.
set -euo pipefail
source "$(dirname "$0")/train-lib.sh"

PHOTO=(--data "$DATA/imagenet-samples" --hold-out 20 --test-crop 128 --arch unet-32-x2
       --crop 64 --crops-per-image 16 --batch-size 32 --lr 1e-3)
CIFAR=(--data "$DATA/cifar10/train" --test "$DATA/cifar10/test" --test-limit 1000
       --test-crop 32 --arch unet-32-x2 --crop 32 --batch-size 32 --lr 1e-3)

train photo-unet-0.5 "${PHOTO[@]}" --sigma 0.5 --epochs 5 --init photo-unet-0.25
train cifar10-unet-1.0 "${CIFAR[@]}" --sigma 1.0 --epochs 6 --init cifar10-unet-0.5
train photo-unet-1.0 "${PHOTO[@]}" --sigma 1.0 --epochs 5 --init photo-unet-0.5
