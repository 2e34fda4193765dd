// Line charts as inline SVG for the run report: steps along x, a linear or logarithmic value axis
// with round ticks, several curves with a legend, and marked steps (learning-rate cuts). The chart
// carries its axes' ranges as data-* attributes, from which the report's script reads values back
// under the mouse.
#pragma once
#include <string>
#include <vector>

#include "face/report/series.h"

namespace cuface::report {

struct Curve {
  std::string name, color;
  Series points;      // drawn as a line, already downsampled
  Series envelope;    // optional: the min/max outline of every point, drawn faint behind `points`
  bool dots = false;  // a dot on each point (a few validations)
};

struct StepMark {
  double step = 0;
  std::string label;
};

struct Chart {
  std::string title, y_label;
  bool log_y = false;  // non-positive values are left out of a log chart
  std::vector<Curve> curves;
  std::vector<StepMark> marks;
};

// The chart as an <svg class="chart"> element; every curve must have a point.
std::string chart_svg(const Chart& chart);

// "1.5k", "200k", "1M": steps on tick labels and in text.
std::string step_text(double step);

}  // namespace cuface::report
