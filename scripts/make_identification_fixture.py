#!/usr/bin/python3
"""Reference numbers for face/eval/identification.cpp: numpy float64 brute force on real faces.

Two steps, around `cuface embed` (run from the repository root):

  # 1. choose LFW images: 12 people with at least 4 images each (2 make the template, 2 are mated
  #    probes) and 32 images of 24 other people (non-mated probes), none of them people the model
  #    trained on (--exclude: the demo's train.list)
  scripts/make_identification_fixture.py list ../shared/data/lfw --exclude runs/demo/train.list > /tmp/id.list
  # 2. embed them with a trained model (the demo's tiny ResNet: cuface demo --out runs/demo)
  build/bin/cuface embed --model runs/demo/run --images /tmp/id.list --align ../shared/data/lfw/landmarks5.txt \\
      --out /tmp/id.npy
  # 3. the fixture: tests/fixtures/identification_lfw.npy (the embeddings, as the test feeds them) and
  #    tests/fixtures/identification_lfw.json (the split and numpy's results)
  scripts/make_identification_fixture.py fixture /tmp/id.npy

The reference, in float64: each row divided by its norm; a template is the normalised mean of its
identity's normalised gallery rows; scores = probes @ templates.T; each probe's candidates are the
templates by descending score (stable: ties keep the lower row first); CMC(r) = mated probes whose
template is among their r best; at a target FPIR f with N non-mated probes, floor(f N) false
positives are allowed, the threshold t is the (floor(f N) + 1)-th highest best score of a non-mated
probe (-inf when floor(f N) >= N; unsupported when floor(f N) = 0); TPIR = mated probes whose best
candidate is their own template with a score above t / mated probes; FPIR = non-mated probes whose best
score is above t / non-mated probes. tests/face/test_identification.cpp compares.
"""
import json
import math
import os
import sys

import numpy as np

ENROLLED, PER_ENROLLED, GALLERY_PER_PERSON = 12, 4, 2
NON_MATED_PEOPLE, NON_MATED_IMAGES = 24, 32
K = 5
FPIR_TARGETS = [0.25, 0.1, 0.01]
FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")


def choose_images(lfw, exclude_list):
    excluded = set()
    if exclude_list:
        with open(exclude_list) as f:
            excluded = {os.path.basename(os.path.dirname(line.split()[0])) for line in f if line.strip()}
    root = os.path.join(lfw, "images")
    people = {}
    for name in sorted(os.listdir(root)):
        if name not in excluded:
            people[name] = sorted(os.listdir(os.path.join(root, name)))
    rng = np.random.default_rng(17)
    many = [n for n in people if len(people[n]) >= PER_ENROLLED]
    enrolled = sorted(rng.choice(many, ENROLLED, replace=False).tolist())
    others = sorted(rng.choice([n for n in people if n not in enrolled], NON_MATED_PEOPLE, replace=False).tolist())
    paths = [os.path.join(root, n, f) for n in enrolled for f in people[n][:PER_ENROLLED]]
    # Every other person's first image, then their second ones until the count is reached.
    non_mated = [os.path.join(root, n, people[n][0]) for n in others]
    non_mated += [os.path.join(root, n, people[n][1]) for n in others if len(people[n]) > 1]
    paths += sorted(non_mated[:NON_MATED_IMAGES])
    return paths


def normalise(rows):
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def make_fixture(npy):
    with open(os.path.splitext(npy)[0] + ".txt") as f:
        paths = [line.rstrip("\n") for line in f]
    rows = np.load(npy).astype(np.float32)
    assert rows.shape[0] == len(paths), "one path per row"
    person = [os.path.basename(os.path.dirname(p)) for p in paths]
    names = []
    for p in person[: ENROLLED * PER_ENROLLED]:
        if p not in names:
            names.append(p)
    assert len(names) == ENROLLED, "the first rows are the enrolled people's"

    gallery_images, gallery_row, probe_images, probe_truth = [], [], [], []
    seen = {}
    for i, p in enumerate(person):
        if p in names and seen.get(p, 0) < GALLERY_PER_PERSON:
            seen[p] = seen.get(p, 0) + 1
            gallery_images.append(i)
            gallery_row.append(names.index(p))
        else:
            probe_images.append(i)
            probe_truth.append(names.index(p) if p in names else -1)
    order = np.argsort(gallery_row, kind="stable")  # gallery images by template row, as the C++ split lists them
    gallery_images = [gallery_images[i] for i in order]
    gallery_row = [gallery_row[i] for i in order]

    unit = normalise(rows.astype(np.float64))
    templates = np.zeros((ENROLLED, rows.shape[1]))
    for i, t in zip(gallery_images, gallery_row):
        templates[t] += unit[i]
    templates = normalise(templates)
    probes = unit[probe_images]
    scores = probes @ templates.T
    candidates = np.argsort(-scores, axis=1, kind="stable")[:, :K]
    candidate_scores = np.take_along_axis(scores, candidates, axis=1)

    truth = np.array(probe_truth)
    mated = truth >= 0
    rank = np.zeros(len(truth), dtype=int)  # 0: not among the K
    for p in np.flatnonzero(mated):
        hits = np.flatnonzero(candidates[p] == truth[p])
        rank[p] = hits[0] + 1 if hits.size else 0
    cmc = [float(np.mean((rank[mated] >= 1) & (rank[mated] <= r))) for r in range(1, K + 1)]

    non_mated_best = np.sort(candidate_scores[~mated, 0])[::-1]
    right_best = candidate_scores[mated & (rank == 1), 0]
    n = non_mated_best.size
    open_set = []
    for f in FPIR_TARGETS:
        allowed = math.floor(f * n + 1e-9)
        if allowed < 1:
            open_set.append({"fpir_target": f, "supported": False})
            continue
        t = non_mated_best[allowed] if allowed < n else -math.inf
        open_set.append({"fpir_target": f, "supported": True, "threshold": float(t),
                         "tpir": float(np.sum(right_best > t)) / float(np.sum(mated)),
                         "fpir": float(np.sum(non_mated_best > t)) / float(n)})

    np.save(os.path.join(FIXTURES, "identification_lfw.npy"), rows)
    fixture = {
        "source": "LFW images (paths below) embedded by cuface's demo model; "
                  "written by scripts/make_identification_fixture.py",
        "paths": [os.path.join(*p.split(os.sep)[-2:]) for p in paths],
        "rows": int(rows.shape[0]), "dim": int(rows.shape[1]), "identities": ENROLLED, "names": names,
        "gallery_images": gallery_images, "gallery_row": gallery_row,
        "probe_images": probe_images, "probe_truth": probe_truth,
        "mated": int(np.sum(mated)), "non_mated": int(np.sum(~mated)),
        "scores": [[round(float(s), 10) for s in row] for row in scores],
        "k": K, "candidate_rows": candidates.tolist(),
        "candidate_scores": [[round(float(s), 10) for s in row] for row in candidate_scores],
        "cmc": cmc, "fpir_targets": FPIR_TARGETS, "open_set": open_set,
    }
    with open(os.path.join(FIXTURES, "identification_lfw.json"), "w") as f:
        json.dump(fixture, f, indent=1)
        f.write("\n")
    print(f"{rows.shape[0]} rows: {int(np.sum(mated))} mated and {int(np.sum(~mated))} non-mated probes, "
          f"rank-1 {cmc[0]:.3f}, rank-5 {cmc[-1]:.3f}")


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "list":
        exclude = sys.argv[sys.argv.index("--exclude") + 1] if "--exclude" in sys.argv else None
        print("\n".join(choose_images(sys.argv[2], exclude)))
    elif len(sys.argv) == 3 and sys.argv[1] == "fixture":
        make_fixture(sys.argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
