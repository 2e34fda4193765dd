// What a run folder recorded, read back for `cuface report`: config.json, loss_debug.csv (a row per
// step), valid.csv (a row per validation figure), and the evaluation outputs saved for it
// (`cuface eval-fr --report/--roc`, `cuface eval-attr --report`). Every malformed file is one error
// naming the file and, for CSV, the line.
#pragma once
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "face/eval/metrics.h"
#include "face/report/series.h"

namespace cuface::report {

// loss_debug.csv by column (step, epoch, lr, loss, loss_fr, ..., images_per_s): one value per row,
// NaN for an empty cell (a task the step did not train). Rows logged after the checkpoint a run
// was resumed from appear twice in the file; the later ones replace them.
struct StepLog {
  std::vector<double> step;
  std::map<std::string, std::vector<double>> columns;

  // The column's finite values against the step (empty for a column the file does not have).
  Series series(const std::string& column) const;
};

// valid.csv: figures[task][figure], one point per validation, in step order.
using ValidationLog = std::map<std::string, std::map<std::string, Series>>;

// An evaluation output, recognised by its content.
struct Evaluation {
  enum class Kind { Verification, SampledVerification, Attributes, Roc };
  std::filesystem::path file;
  Kind kind = Kind::Verification;
  nlohmann::json report;  // eval-fr --report (one pair list, or --sample/--repeat), eval-attr --report
  eval::Roc roc;          // eval-fr --roc
};

struct RunRecord {
  std::filesystem::path dir;
  nlohmann::json config;
  StepLog steps;
  ValidationLog validation;             // empty without valid.csv
  std::vector<Evaluation> evaluations;  // RUN/eval/*.json and *.csv (sorted), then the files given
  std::vector<std::string> notes;       // what was left out, one line each (printed by the command)
};

// Reads `dir`, a folder `cuface train --out` wrote (config.json and loss_debug.csv), its
// eval/ folder (files there that are no evaluation output are skipped with a note) and
// `evaluation_files` (each must be one).
RunRecord read_run(const std::filesystem::path& dir, const std::vector<std::filesystem::path>& evaluation_files);

// One evaluation output; throws naming the file when it is none of them.
Evaluation read_evaluation(const std::filesystem::path& file);

}  // namespace cuface::report
