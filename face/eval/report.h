// Evaluation outputs: the ROC as CSV, an SVG ROC chart (log-scale FAR), report.json, and the text
// summary printed at the end of `cuface eval-fr`. Every file is written atomically.
#pragma once
#include <filesystem>
#include <span>
#include <string>

#include <nlohmann/json.hpp>

#include "face/eval/metrics.h"
#include "face/eval/verification.h"

namespace cuface::eval {

// Columns threshold,far,tar, one row per ROC point; the first threshold is "inf" (accepts nothing).
void write_roc_csv(const std::filesystem::path& file, const Roc& roc);

// A line chart of TAR against FAR on a log axis with a tick per decade, from the smallest FAR the
// impostor count can show (1 / impostors) to 1; TAR from 0 to 1. `marks` are drawn as labelled dots.
void write_roc_svg(const std::filesystem::path& file, const Roc& roc, const std::string& title,
                   std::span<const TarAtFar> marks = {});
// The same chart as text (an <svg> element, also inlined by `cuface report`).
std::string roc_svg(const Roc& roc, const std::string& title, std::span<const TarAtFar> marks = {});

// Text with <, >, & and " escaped, for SVG and HTML.
std::string escape_xml(const std::string& text);

void write_json(const std::filesystem::path& file, const nlohmann::json& report);

// Keys: pairs, same_pairs, different_pairs, folds, accuracy_mean, accuracy_std, threshold (the mean
// fold threshold on the squared distance), threshold_cosine, fold_accuracy, fold_threshold,
// best_accuracy, best_threshold, same_accuracy, different_accuracy, gap, tar_at_far (list of
// {far, supported, tar, far_achieved, threshold_cosine}), auc, and `definitions` saying what each is.
nlohmann::json verification_json(const VerificationResult& result);

// The lines `cuface eval-fr` prints.
std::string verification_summary(const VerificationResult& result);

}  // namespace cuface::eval
