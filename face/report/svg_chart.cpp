#include "face/report/svg_chart.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "face/eval/report.h"

namespace cuface::report {

namespace {

// Canvas and plot area in SVG units; the page scales the whole chart to its column.
constexpr double kWidth = 640, kHeight = 280, kLeft = 64, kRight = 16, kTop = 48, kBottom = 40;
constexpr double kPlotWidth = kWidth - kLeft - kRight, kPlotHeight = kHeight - kTop - kBottom;

std::string number_text(double v) {
  char text[32];
  std::snprintf(text, sizeof text, "%.4g", v);
  return text;
}

std::string pixel(double v) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f", v);
  return text;
}

// An axis from `low` to `high` with its tick values. Linear: ticks at multiples of 1, 2 or 5 times a
// power of ten, about five of them, the range widened to the ticks around it. Logarithmic: whole
// decades, with 2 and 5 between them when the range spans at most two.
struct Axis {
  double low = 0, high = 1;
  bool log = false;
  std::vector<double> ticks;

  double fraction(double v) const {
    return log ? (std::log10(v) - std::log10(low)) / (std::log10(high) - std::log10(low)) : (v - low) / (high - low);
  }
};

Axis linear_axis(double low, double high) {
  if (high <= low) {  // one value: a band around it
    const double spread = low != 0 ? std::fabs(low) * 0.1 : 1;
    low -= spread, high += spread;
  }
  const double raw = (high - low) / 5;
  const double power = std::pow(10.0, std::floor(std::log10(raw)));
  double step = 10 * power;
  for (double m : {1.0, 2.0, 5.0})
    if (m * power >= raw * (1 - 1e-9)) {
      step = m * power;
      break;
    }
  Axis axis;
  const double first = std::floor(low / step + 1e-9), last = std::ceil(high / step - 1e-9);
  axis.low = first * step, axis.high = last * step;
  for (double i = first; i <= last + 0.5; ++i) axis.ticks.push_back(i * step);
  return axis;
}

Axis log_axis(double low, double high) {
  const int first = int(std::floor(std::log10(low) + 1e-9));
  int last = int(std::ceil(std::log10(high) - 1e-9));
  if (last <= first) last = first + 1;
  Axis axis;
  axis.log = true;
  axis.low = std::pow(10.0, first), axis.high = std::pow(10.0, last);
  for (int d = first; d <= last; ++d) {
    axis.ticks.push_back(std::pow(10.0, d));
    if (last - first <= 2 && d < last)
      for (double m : {2.0, 5.0}) axis.ticks.push_back(m * std::pow(10.0, d));
  }
  std::sort(axis.ticks.begin(), axis.ticks.end());
  return axis;
}

bool shown(const Chart& chart, double value) { return std::isfinite(value) && (!chart.log_y || value > 0); }

}  // namespace

std::string step_text(double step) {
  const double magnitude = std::fabs(step);
  if (magnitude >= 1e6) return number_text(step / 1e6) + "M";
  if (magnitude >= 1e3) return number_text(step / 1e3) + "k";
  return number_text(step);
}

std::string chart_svg(const Chart& chart) {
  double x_low = INFINITY, x_high = -INFINITY, y_low = INFINITY, y_high = -INFINITY;
  for (const Curve& curve : chart.curves)
    for (const Series* s : {&curve.points, &curve.envelope})
      for (size_t i = 0; i < s->size(); ++i) {
        if (!shown(chart, s->y[i])) continue;
        x_low = std::min(x_low, s->x[i]), x_high = std::max(x_high, s->x[i]);
        y_low = std::min(y_low, s->y[i]), y_high = std::max(y_high, s->y[i]);
      }
  if (!std::isfinite(x_low)) x_low = x_high = y_low = y_high = 1;  // nothing to show: an empty frame
  const Axis x = linear_axis(std::min(x_low, 0.0), x_high);
  const Axis y = chart.log_y ? log_axis(y_low, y_high) : linear_axis(y_low, y_high);
  auto px = [&](double v) { return kLeft + kPlotWidth * x.fraction(v); };
  auto py = [&](double v) { return kTop + kPlotHeight * (1 - y.fraction(v)); };

  std::ostringstream svg;
  svg << "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 " << kWidth << " " << kHeight
      << "\" data-x0=\"" << x.low << "\" data-x1=\"" << x.high << "\" data-y0=\"" << y.low << "\" data-y1=\"" << y.high
      << "\" data-log=\"" << (y.log ? 1 : 0) << "\" data-left=\"" << kLeft << "\" data-top=\"" << kTop
      << "\" data-width=\"" << kPlotWidth << "\" data-height=\"" << kPlotHeight << "\">\n"
      << "<text class=\"title\" x=\"" << kLeft << "\" y=\"20\">" << eval::escape_xml(chart.title) << "</text>\n";

  // Legend under the title, one entry after another.
  double legend_x = kLeft;
  for (const Curve& curve : chart.curves) {
    svg << "<line x1=\"" << pixel(legend_x) << "\" y1=\"34\" x2=\"" << pixel(legend_x + 18) << "\" y2=\"34\" stroke=\""
        << curve.color << "\" stroke-width=\"2.5\"/><text x=\"" << pixel(legend_x + 23) << "\" y=\"38\">"
        << eval::escape_xml(curve.name) << "</text>\n";
    legend_x += 34 + 6.5 * double(curve.name.size());
  }

  // Grid, ticks and axis titles.
  svg << "<g class=\"grid\">\n";
  for (double t : x.ticks)
    svg << "<line x1=\"" << pixel(px(t)) << "\" y1=\"" << kTop << "\" x2=\"" << pixel(px(t)) << "\" y2=\""
        << kTop + kPlotHeight << "\"/>\n";
  for (double t : y.ticks)
    svg << "<line x1=\"" << kLeft << "\" y1=\"" << pixel(py(t)) << "\" x2=\"" << kLeft + kPlotWidth << "\" y2=\""
        << pixel(py(t)) << "\"/>\n";
  svg << "</g>\n<g class=\"ticks\" text-anchor=\"middle\">\n";
  for (double t : x.ticks)
    svg << "<text x=\"" << pixel(px(t)) << "\" y=\"" << kTop + kPlotHeight + 16 << "\">" << step_text(t) << "</text>\n";
  svg << "</g>\n<g class=\"ticks\" text-anchor=\"end\">\n";
  for (double t : y.ticks)
    svg << "<text x=\"" << kLeft - 6 << "\" y=\"" << pixel(py(t) + 4) << "\">" << number_text(t) << "</text>\n";
  svg << "</g>\n<rect class=\"frame\" x=\"" << kLeft << "\" y=\"" << kTop << "\" width=\"" << kPlotWidth
      << "\" height=\"" << kPlotHeight << "\"/>\n<text x=\"" << kLeft + kPlotWidth / 2 << "\" y=\"" << kHeight - 6
      << "\" text-anchor=\"middle\">step</text>\n<text x=\"14\" y=\"" << kTop + kPlotHeight / 2
      << "\" text-anchor=\"middle\" transform=\"rotate(-90 14 " << kTop + kPlotHeight / 2 << ")\">"
      << eval::escape_xml(chart.y_label) << "</text>\n";

  // Learning-rate cuts: a dashed line each, labelled unless it would overwrite the previous label.
  double labelled_at = -INFINITY;
  for (const StepMark& mark : chart.marks) {
    const double at = px(mark.step);
    svg << "<line class=\"mark\" x1=\"" << pixel(at) << "\" y1=\"" << kTop << "\" x2=\"" << pixel(at) << "\" y2=\""
        << kTop + kPlotHeight << "\"/>\n";
    if (at - labelled_at < 36) continue;
    svg << "<text class=\"mark\" x=\"" << pixel(at + 3) << "\" y=\"" << kTop + 12 << "\">"
        << eval::escape_xml(mark.label) << "</text>\n";
    labelled_at = at;
  }

  auto polyline = [&](const Series& s, const std::string& attributes) {
    svg << "<polyline " << attributes << " points=\"";
    for (size_t i = 0; i < s.size(); ++i)
      if (shown(chart, s.y[i])) svg << pixel(px(s.x[i])) << "," << pixel(py(s.y[i])) << " ";
    svg << "\"/>\n";
  };
  for (const Curve& curve : chart.curves)
    if (!curve.envelope.empty()) polyline(curve.envelope, "class=\"envelope\" stroke=\"" + curve.color + "\"");
  for (const Curve& curve : chart.curves) {
    polyline(curve.points,
             "class=\"series\" data-name=\"" + eval::escape_xml(curve.name) + "\" stroke=\"" + curve.color + "\"");
    if (!curve.dots) continue;
    for (size_t i = 0; i < curve.points.size(); ++i)
      if (shown(chart, curve.points.y[i]))
        svg << "<circle cx=\"" << pixel(px(curve.points.x[i])) << "\" cy=\"" << pixel(py(curve.points.y[i]))
            << "\" r=\"3\" fill=\"" << curve.color << "\"/>\n";
  }
  svg << "</svg>\n";
  return svg.str();
}

}  // namespace cuface::report
