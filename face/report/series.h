// Points of one curve (a step and a value each) for the run report, and the reductions that keep a
// long run's charts small: a million logged steps become at most two points per bucket of steps,
// as many buckets as a chart has pixel columns.
#pragma once
#include <cstddef>
#include <span>
#include <vector>

namespace cuface::report {

struct Series {
  std::vector<double> x, y;  // x rising (steps)

  size_t size() const { return x.size(); }
  bool empty() const { return x.empty(); }
  void add(double at, double value) { x.push_back(at), y.push_back(value); }
};

// The points where y is finite (an empty loss_debug.csv cell, a task the step did not train, is NaN).
Series finite_points(std::span<const double> x, std::span<const double> y);

// Splits [x.front(), x.back()] into `buckets` equal intervals and keeps, in each, its lowest and its
// highest point in their order along x, plus the first and the last point: every peak and dip a
// chart `buckets` pixels wide would draw from all the points. A series of at most 2 * buckets + 2
// points is returned as it is.
Series min_max_downsample(const Series& series, int buckets);

// The mean value of each non-empty interval at its points' mean x: the trend through a noisy
// per-step series (empty when the series has at most 2 * buckets + 2 points: it is drawn whole).
Series bucket_means(const Series& series, int buckets);

// A step where the learning rate was cut (a plateau decision or a step-schedule milestone): the
// rate fell from one logged row to the next, by `factor` (new / old).
struct LrCut {
  double step = 0;
  double factor = 0;
};
std::vector<LrCut> lr_cuts(const Series& lr);

}  // namespace cuface::report
