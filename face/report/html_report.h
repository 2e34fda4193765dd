// The run report: one self-contained HTML page (inline SVG charts, inline CSS and a small script;
// nothing is fetched) of what a run folder recorded: training loss and batch accuracy per task, the
// learning rate with its cuts marked, images/s, validation figures over steps, the last
// validation's confusion matrices, saved evaluations (figures, ROC, confusion) and the run's config.
#pragma once
#include <string>

#include "face/report/run_log.h"

namespace cuface::report {

struct ReportOptions {
  // Per-step curves longer than 2 x buckets are drawn as the mean of each of `buckets` equal ranges
  // of steps, over the faint min/max outline of every point (face/report/series.h).
  int buckets = 600;
};

struct Report {
  std::string html;
  int charts = 0;  // SVG charts on the page (ROC charts included)
};

Report make_report(const RunRecord& run, const ReportOptions& options = {});

}  // namespace cuface::report
