#!/usr/bin/python3
"""Reference numbers for face/eval/metrics.cpp, computed with numpy and scikit-learn.

Writes tests/fixtures/metrics_verification.json (three fixed-seed pair sets with their ROC, AUC,
TAR@FAR, InsightFace 10-fold accuracy, the original project's best balanced accuracy and gap) and
tests/fixtures/metrics_classification.json (confusion matrix, per-class and average accuracy, MAE,
within-one-bin and top-N accuracy). tests/face/test_metrics.cpp compares the C++ results to 1e-6.

Run from the repository root: scripts/make_metric_fixtures.py
"""
import json
import math
import os

import numpy as np
from sklearn.metrics import (auc, balanced_accuracy_score, confusion_matrix, mean_absolute_error,
                             roc_auc_score, roc_curve, top_k_accuracy_score)
from sklearn.model_selection import KFold

FAR_TARGETS = [1e-1, 1e-2, 1e-3, 1e-4]


def make_pairs(rng, n_pairs, dim, noise, quantise=None):
    """Pairs of L2-normalised embeddings: a same pair is one random direction plus noise twice."""
    same = np.zeros(n_pairs, dtype=bool)
    same[rng.permutation(n_pairs)[: n_pairs // 2]] = True
    a = rng.standard_normal((n_pairs, dim))
    b = np.where(same[:, None], a + noise * rng.standard_normal((n_pairs, dim)), rng.standard_normal((n_pairs, dim)))
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    squared = np.sum(np.square(a - b), axis=1)
    distance = np.sqrt(squared)
    score = np.sum(a * b, axis=1)
    if quantise:  # coarse values make many ties, which the ROC and the threshold searches must handle
        squared = np.round(squared / quantise) * quantise
        distance = np.round(distance / quantise) * quantise
        score = np.round(score / quantise) * quantise
    return same, score, distance, squared


def insightface_kfold(thresholds, dist, actual_issame, nrof_folds):
    """InsightFace verification.py calculate_roc / calculate_accuracy (pca = 0), on given distances."""

    def accuracy(threshold, d, issame):
        predict_issame = np.less(d, threshold)
        tp = np.sum(np.logical_and(predict_issame, issame))
        tn = np.sum(np.logical_and(np.logical_not(predict_issame), np.logical_not(issame)))
        return float(tp + tn) / d.size

    folds = KFold(n_splits=nrof_folds, shuffle=False)
    fold_accuracy, fold_threshold = [], []
    for train_set, test_set in folds.split(np.arange(len(dist))):
        acc_train = np.array([accuracy(t, dist[train_set], actual_issame[train_set]) for t in thresholds])
        best = int(np.argmax(acc_train))
        fold_threshold.append(float(thresholds[best]))
        fold_accuracy.append(accuracy(thresholds[best], dist[test_set], actual_issame[test_set]))
    return {
        "fold_accuracy": fold_accuracy,
        "fold_threshold": fold_threshold,
        "accuracy_mean": float(np.mean(fold_accuracy)),
        "accuracy_std": float(np.std(fold_accuracy)),
        "threshold_mean": float(np.mean(fold_threshold)),
    }


def original_best_accuracy(distance, same):
    """The original: mean of same- and different-pair accuracy, best over 0.4..1.8 step 0.01."""
    best = None
    for i in range(141):
        t = 0.4 + i * 0.01
        same_acc = float(np.mean(distance[same] < t))
        diff_acc = float(np.mean(distance[~same] >= t))
        acc = (same_acc + diff_acc) / 2
        if best is None or acc > best["accuracy"]:
            best = {"accuracy": acc, "threshold": t, "same_accuracy": same_acc, "different_accuracy": diff_acc}
    return best


def tar_at_far(score, same, targets):
    """From sklearn's full ROC: the highest point whose false accepts stay within floor(far * N)."""
    fpr, tpr, _ = roc_curve(same, score, drop_intermediate=False)
    impostors = int(np.sum(~same))
    false_accepts = np.round(fpr * impostors)
    sorted_impostor = np.sort(score[~same])[::-1]
    out = []
    for far in targets:
        allowed = math.floor(far * impostors + 1e-9)
        if allowed < 1:
            out.append({"far_target": far, "supported": False})
            continue
        idx = int(np.nonzero(false_accepts <= allowed)[0][-1])
        threshold = float(sorted_impostor[allowed]) if allowed < impostors else -math.inf
        out.append({"far_target": far, "supported": True, "tar": float(tpr[idx]), "far": float(fpr[idx]),
                    "threshold": threshold})
    return out


def verification_set(name, seed, n_pairs, dim, noise, quantise=None):
    rng = np.random.default_rng(seed)
    same, score, distance, squared = make_pairs(rng, n_pairs, dim, noise, quantise)
    fpr, tpr, thresholds = roc_curve(same, score, drop_intermediate=False)
    roc_auc = roc_auc_score(same, score)
    assert abs(roc_auc - auc(fpr, tpr)) < 1e-12
    diff = distance[~same]
    return {
        "name": name,
        "same": same.astype(int).tolist(),
        "score": score.tolist(),
        "distance": distance.tolist(),
        "squared_distance": squared.tolist(),
        # sklearn puts max(score) + 1 at point 0; cuface writes +inf there, so only the rest is compared.
        "roc": {"far": fpr.tolist(), "tar": tpr.tolist(), "threshold": thresholds[1:].tolist()},
        "auc": float(roc_auc),
        "tar_at_far": tar_at_far(score, same, FAR_TARGETS),
        "kfold": insightface_kfold(np.arange(0, 4, 0.01), squared, same, 10),
        "original": original_best_accuracy(distance, same),
        "gap": float((np.mean(diff) - np.mean(distance[same])) / np.std(diff, ddof=1)),
    }


def classification_set(seed):
    rng = np.random.default_rng(seed)
    classes, n = 7, 500
    # Class 5 never occurs as the truth: the average accuracy must skip it, as sklearn's balanced accuracy does.
    truth = rng.choice([0, 1, 2, 3, 4, 6], size=n, p=[0.3, 0.2, 0.2, 0.1, 0.1, 0.1])
    noisy = truth + rng.integers(-2, 3, size=n) * (rng.random(n) < 0.4)
    predicted = np.clip(noisy, 0, classes - 1)
    scores = rng.standard_normal((n, classes)).astype(np.float32)
    scores[np.arange(n), truth] += 1.0
    ages_true = rng.uniform(1, 90, size=n)
    ages_pred = ages_true + rng.normal(0, 8, size=n)
    cm = confusion_matrix(truth, predicted, labels=list(range(classes)))
    present = cm.sum(axis=1) > 0
    class_accuracy = [float(cm[c, c] / cm[c].sum()) if present[c] else None for c in range(classes)]
    return {
        "classes": classes,
        "truth": truth.tolist(),
        "predicted": predicted.tolist(),
        "confusion": cm.tolist(),
        "class_accuracy": class_accuracy,
        "overall_accuracy": float(np.trace(cm) / n),
        "average_accuracy": float(balanced_accuracy_score(truth, predicted)),
        "within_one": float(np.mean(np.abs(truth - predicted) <= 1)),
        "scores": scores.tolist(),
        "top_n": {str(k): float(top_k_accuracy_score(truth, scores, k=k, labels=list(range(classes))))
                  for k in (1, 2, 3)},
        "age_true": ages_true.tolist(),
        "age_predicted": ages_pred.tolist(),
        "mae": float(mean_absolute_error(ages_true, ages_pred)),
    }


def main():
    out_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
    verification = {"far_targets": FAR_TARGETS, "sets": [
        verification_set("lfw_like_600", seed=1, n_pairs=600, dim=8, noise=0.9),
        verification_set("large_3000", seed=2, n_pairs=3000, dim=16, noise=1.1),
        verification_set("ties_2000", seed=3, n_pairs=2000, dim=8, noise=1.0, quantise=0.02),
    ]}
    with open(os.path.join(out_dir, "metrics_verification.json"), "w") as f:
        json.dump(verification, f)
    with open(os.path.join(out_dir, "metrics_classification.json"), "w") as f:
        json.dump(classification_set(seed=4), f)


if __name__ == "__main__":
    main()
