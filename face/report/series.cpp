#include "face/report/series.h"

#include <algorithm>
#include <cmath>

namespace cuface::report {

namespace {

bool small_enough(const Series& series, int buckets) { return series.size() <= 2 * size_t(buckets) + 2; }

// The interval of [x.front(), x.back()] that x falls in, 0 .. buckets - 1.
struct Buckets {
  double first, width;
  int count;

  Buckets(const Series& series, int buckets)
      : first(series.x.front()), width((series.x.back() - series.x.front()) / buckets), count(buckets) {}
  int of(double x) const { return width > 0 ? std::min(count - 1, int((x - first) / width)) : 0; }
};

}  // namespace

Series finite_points(std::span<const double> x, std::span<const double> y) {
  Series out;
  for (size_t i = 0; i < x.size() && i < y.size(); ++i)
    if (std::isfinite(x[i]) && std::isfinite(y[i])) out.add(x[i], y[i]);
  return out;
}

Series min_max_downsample(const Series& series, int buckets) {
  if (small_enough(series, buckets)) return series;
  const Buckets intervals(series, buckets);
  std::vector<size_t> kept{0};
  auto keep = [&](size_t i) {
    if (i != kept.back()) kept.push_back(i);
  };
  size_t lowest = 0, highest = 0;
  int current = intervals.of(series.x[0]);
  for (size_t i = 0; i <= series.size(); ++i) {
    if (i == series.size() || intervals.of(series.x[i]) != current) {
      keep(std::min(lowest, highest));
      keep(std::max(lowest, highest));
      if (i == series.size()) break;
      current = intervals.of(series.x[i]);
      lowest = highest = i;
    }
    if (series.y[i] < series.y[lowest]) lowest = i;
    if (series.y[i] > series.y[highest]) highest = i;
  }
  keep(series.size() - 1);
  Series out;
  for (size_t i : kept) out.add(series.x[i], series.y[i]);
  return out;
}

Series bucket_means(const Series& series, int buckets) {
  if (small_enough(series, buckets)) return {};
  const Buckets intervals(series, buckets);
  std::vector<double> sum_x(size_t(buckets), 0.0), sum_y(size_t(buckets), 0.0);
  std::vector<size_t> count(size_t(buckets), 0);
  for (size_t i = 0; i < series.size(); ++i) {
    const size_t b = size_t(intervals.of(series.x[i]));
    sum_x[b] += series.x[i], sum_y[b] += series.y[i], ++count[b];
  }
  Series out;
  for (size_t b = 0; b < count.size(); ++b)
    if (count[b] > 0) out.add(sum_x[b] / double(count[b]), sum_y[b] / double(count[b]));
  return out;
}

std::vector<LrCut> lr_cuts(const Series& lr) {
  // loss_debug.csv prints the rate with 6 significant digits: a smaller change is rounding.
  constexpr double kRounding = 1e-4;
  std::vector<LrCut> cuts;
  for (size_t i = 1; i < lr.size(); ++i)
    if (lr.y[i] < lr.y[i - 1] * (1 - kRounding)) cuts.push_back({lr.x[i], lr.y[i] / lr.y[i - 1]});
  return cuts;
}

}  // namespace cuface::report
