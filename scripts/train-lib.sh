# Shared by scripts/train-headline*.sh (sourced, not run): `train NAME FLAGS…` runs
# `robustify train denoiser FLAGS… --out runs/NAME`, niced, from a copy of the release
# binary (runs/robustify-train, so that a rebuild does not replace the program under it),
# logging to runs/NAME.log. It resumes from the checkpoint in runs/NAME, and skips a
# training that finished there or was shipped (denoisers/NAME). Checkpoints every
# $SAVE_EVERY seconds (default 240).
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=runs/robustify-train
[ -x "$BIN" ] || cp target/release/robustify "$BIN"
DATA=../shared/data

train() { # name, then the training's own flags
  local name=$1; shift
  local out=runs/$name
  if [ -f "denoisers/$name/card.json" ]; then
    echo "$name: shipped (denoisers/$name)"; return
  fi
  if [ -f "$out/card.json" ] && grep -q "finished:" "runs/$name.log" 2>/dev/null; then
    echo "$name: finished"; return
  fi
  local resume=()
  [ -f "$out/progress.json" ] && resume=(--resume)
  echo "$name: training (log runs/$name.log)"
  nice -n 19 "$BIN" train denoiser "$@" --out "$out" --save-every "${SAVE_EVERY:-240}" \
    "${resume[@]}" >>"runs/$name.log" 2>&1 || { echo "$name: failed (runs/$name.log)"; return 1; }
}
