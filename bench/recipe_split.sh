#!/usr/bin/env bash
# The person-disjoint LFW split that docs/recipes.md measures training recipes on.
#
#   bench/recipe_split.sh DATA OUT [SIZE] [MIN_IMAGES]
#
# Held out: every person named in folds 7 and 8 of DATA/lfw/pairs.txt (LFW View 2's folds are
# person-disjoint, so no held-out person is in folds 1-6 either). Written to OUT/heldout_pairs.txt
# in the LFW format (header "2 300"), for `cuface eval-fr --pairs ... --images DATA/lfw/images`.
# Trained on: every other person with at least MIN_IMAGES images (default 2: a person seen once
# teaches the margin head nothing about within-person variation), packed aligned at SIZE pixels
# (default 112) as OUT/train (identities numbered by sorted name).
set -euo pipefail

data=${1:?usage: recipe_split.sh DATA OUT [SIZE] [MIN_IMAGES]}
out=${2:?usage: recipe_split.sh DATA OUT [SIZE] [MIN_IMAGES]}
size=${3:-112}
min_images=${4:-2}
cuface=${CUFACE:-build/bin/cuface}
lfw=$data/lfw
for need in "$lfw/pairs.txt" "$lfw/landmarks5.txt" "$lfw/images"; do
  [[ -e $need ]] || { echo "recipe_split: $need not found (the shared LFW data is absent)" >&2; exit 2; }
done
mkdir -p "$out"

# Folds 7 and 8: the header says "folds n", each fold is 2n lines.
awk 'NR == 1 { n = $2; first = 1 + 6 * 2 * n + 1; last = 1 + 8 * 2 * n; print 2, n; next }
     NR >= first && NR <= last' "$lfw/pairs.txt" > "$out/heldout_pairs.txt.tmp"
mv "$out/heldout_pairs.txt.tmp" "$out/heldout_pairs.txt"
awk 'NR > 1 { print $1; if (NF == 4) print $3 }' "$out/heldout_pairs.txt" | sort -u > "$out/heldout_people.txt"

# Every other person with >= min_images images, one identity number per person.
(cd "$lfw/images" && find . -mindepth 2 -name '*.jpg' | sed 's|^\./||' | LC_ALL=C sort) |
  awk -v min="$min_images" -v root="$lfw/images" -F/ '
    function flush() { if (n >= min) { for (k = 1; k <= n; ++k) print root "/" file[k] "\t" id + 0; ++id } n = 0 }
    FNR == NR { held[$1] = 1; next }
    $1 in held { next }
    $1 != person { flush(); person = $1 }
    { file[++n] = $0 }
    END { flush() }' "$out/heldout_people.txt" - > "$out/train.list.tmp"
mv "$out/train.list.tmp" "$out/train.list"

people=$(cut -f2 "$out/train.list" | sort -u | wc -l)
echo "recipe_split: $(wc -l < "$out/train.list") training images of $people people;" \
  "$(wc -l < "$out/heldout_people.txt") held-out people in $(($(wc -l < "$out/heldout_pairs.txt") - 1)) pairs"
"$cuface" pack "$out/train.list" --format list --align "$lfw/landmarks5.txt" --size "$size" --out "$out/train" >/dev/null
echo "recipe_split: packed $out/train at $size px"
