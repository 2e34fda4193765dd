#!/usr/bin/env bash
# One row of docs/recipes.md: train on a bench/recipe_split.sh split, then measure LFW-protocol
# verification accuracy (10 folds) on its held-out pairs.
#
#   bench/recipe_run.sh SPLIT RUN [cuface train flags...]
#
# Prints one line: RUN, steps, training seconds, held-out accuracy mean and std over the folds.
set -euo pipefail
split=${1:?usage: recipe_run.sh SPLIT RUN [train flags...]}
run=${2:?usage: recipe_run.sh SPLIT RUN [train flags...]}
shift 2
cuface=${CUFACE:-build/bin/cuface}
data=${CUFACE_SHARED_DATA:-../shared/data}
start=$(date +%s.%N)
"$cuface" train FR --train-sets "$split/train" --out "$run" --valid-every 0 --checkpoint-every 0 "$@" > "$run.log" 2>&1 ||
  { tail -5 "$run.log" >&2; exit 1; }
seconds=$(echo "$(date +%s.%N) - $start" | bc)
"$cuface" eval-fr --model "$run" --pairs "$split/heldout_pairs.txt" --images "$data/lfw/images" \
  --align "$data/lfw/landmarks5.txt" --folds 10 --report "$run/heldout.json" > "$run.eval.log" 2>&1 ||
  { tail -5 "$run.eval.log" >&2; exit 1; }
steps=$(tail -1 "$run/loss_debug.csv" | cut -d, -f1)
/usr/bin/python3 - "$run" "$steps" "$seconds" <<'PY'
import json, sys
run, steps, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
r = json.load(open(run + "/heldout.json"))
print(f"{run} steps {steps} seconds {seconds:.0f} heldout {r['accuracy_mean']:.4f} +- {r['accuracy_std']:.4f}")
PY
