#include "face/eval/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "engine/atomic_file.h"

namespace cuface::eval {

namespace fs = std::filesystem;

namespace {

std::string format(const char* pattern, auto... values) {
  char buffer[256];
  std::snprintf(buffer, sizeof buffer, pattern, values...);
  return buffer;
}

// Shortest text that reads back as the same double.
std::string exact(double v) {
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return format("%.17g", v);
}

// JSON has no NaN or infinity: those become null.
nlohmann::json number(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

}  // namespace

std::string escape_xml(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

void write_roc_csv(const fs::path& file, const Roc& roc) {
  std::string text = "threshold,far,tar\n";
  for (size_t i = 0; i < roc.far.size(); ++i)
    text += exact(roc.threshold[i]) + "," + exact(roc.far[i]) + "," + exact(roc.tar[i]) + "\n";
  write_file_atomically(file, text);
}

void write_roc_svg(const fs::path& file, const Roc& roc, const std::string& title, std::span<const TarAtFar> marks) {
  write_file_atomically(file, roc_svg(roc, title, marks));
}

std::string roc_svg(const Roc& roc, const std::string& title, std::span<const TarAtFar> marks) {
  // Plot area inside a 640 x 480 canvas, margins for the tick labels and axis titles.
  const double width = 640, height = 480, left = 70, right = 20, top = 40, bottom = 60;
  const double plot_w = width - left - right, plot_h = height - top - bottom;
  const int decades = std::max(1, int(std::ceil(std::log10(double(std::max<int64_t>(roc.impostor, 1))) - 1e-9)));
  auto x_of = [&](double far) { return left + plot_w * (std::log10(far) + decades) / decades; };
  auto y_of = [&](double tar) { return top + plot_h * (1.0 - tar); };

  std::ostringstream svg;
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
      << "\" viewBox=\"0 0 " << width << " " << height << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
      << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      << "<text x=\"" << width / 2 << "\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">" << escape_xml(title)
      << "</text>\n";

  // Grid and ticks: one per decade on FAR, every 0.1 on TAR.
  svg << "<g stroke=\"#ddd\" stroke-width=\"1\">\n";
  for (int d = -decades; d <= 0; ++d)
    svg << format("<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\"/>\n", x_of(std::pow(10.0, d)), top,
                  x_of(std::pow(10.0, d)), top + plot_h);
  for (int t = 0; t <= 10; ++t)
    svg << format("<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\"/>\n", left, y_of(t / 10.0), left + plot_w,
                  y_of(t / 10.0));
  svg << "</g>\n<g text-anchor=\"middle\">\n";
  for (int d = -decades; d <= 0; ++d)
    svg << format("<text x=\"%.2f\" y=\"%.2f\">10<tspan dy=\"-6\" font-size=\"9\">%d</tspan></text>\n",
                  x_of(std::pow(10.0, d)), top + plot_h + 18, d);
  svg << "</g>\n<g text-anchor=\"end\">\n";
  for (int t = 0; t <= 10; t += 2)
    svg << format("<text x=\"%.2f\" y=\"%.2f\">%.1f</text>\n", left - 6, y_of(t / 10.0) + 4, t / 10.0);
  svg << "</g>\n"
      << format("<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"none\" stroke=\"black\"/>\n", left,
                top, plot_w, plot_h)
      << format("<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\">False accept rate (FAR, log scale)</text>\n",
                left + plot_w / 2, height - 14)
      << format("<text x=\"18\" y=\"%.2f\" text-anchor=\"middle\" transform=\"rotate(-90 18 %.2f)\">True accept "
                "rate (TAR)</text>\n",
                top + plot_h / 2, top + plot_h / 2);

  // The curve: points with FAR > 0 (a log axis cannot show 0), thinned to one per quarter pixel.
  svg << "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" points=\"";
  double last_x = -1, last_y = -1;
  for (size_t i = 0; i < roc.far.size(); ++i) {
    if (roc.far[i] <= 0) continue;
    const double x = x_of(roc.far[i]), y = y_of(roc.tar[i]);
    const bool final_point = i + 1 == roc.far.size();
    if (!final_point && std::fabs(x - last_x) < 0.25 && std::fabs(y - last_y) < 0.25) continue;
    svg << format("%.2f,%.2f ", x, y);
    last_x = x, last_y = y;
  }
  svg << "\"/>\n";

  // Dots on the curve, their values listed in the lower right, where a ROC rarely runs.
  int listed = 0;
  for (const TarAtFar& m : marks) {
    if (!m.supported || m.far <= 0) continue;
    svg << format("<circle cx=\"%.2f\" cy=\"%.2f\" r=\"3.5\" fill=\"#d62728\"/>\n", x_of(m.far), y_of(m.tar));
    ++listed;
  }
  double line_y = top + plot_h - 10 - 16.0 * (listed - 1);
  for (const TarAtFar& m : marks) {
    if (!m.supported || m.far <= 0) continue;
    svg << format("<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"end\" fill=\"#d62728\">TAR %.2f%% at FAR %g</text>\n",
                  left + plot_w - 10, line_y, 100 * m.tar, m.far_target);
    line_y += 16;
  }
  svg << "</svg>\n";
  return svg.str();
}

void write_json(const fs::path& file, const nlohmann::json& report) {
  write_file_atomically(file, report.dump(2) + "\n");
}

nlohmann::json verification_json(const VerificationResult& r) {
  nlohmann::json tar = nlohmann::json::array();
  for (const TarAtFar& t : r.tar_at_far)
    tar.push_back({{"far", t.far_target},
                   {"supported", t.supported},
                   {"tar", number(t.tar)},
                   {"far_achieved", number(t.far)},
                   {"threshold_cosine", number(t.threshold)}});
  return {
      {"pairs", r.pairs},
      {"same_pairs", r.same_pairs},
      {"different_pairs", r.different_pairs},
      {"folds", r.folds},
      {"accuracy_mean", r.kfold.accuracy_mean},
      {"accuracy_std", r.kfold.accuracy_std},
      {"threshold", r.kfold.threshold_mean},
      {"threshold_cosine", 1.0 - r.kfold.threshold_mean / 2.0},
      {"fold_accuracy", r.kfold.fold_accuracy},
      {"fold_threshold", r.kfold.fold_threshold},
      {"best_accuracy", r.best.accuracy},
      {"best_threshold", r.best.threshold},
      {"same_accuracy", r.best.same_accuracy},
      {"different_accuracy", r.best.different_accuracy},
      {"gap", r.gap},
      {"tar_at_far", tar},
      {"auc", r.auc},
      {"definitions",
       {{"accuracy_mean", "LFW k-fold protocol as InsightFace: best threshold on the other folds, accuracy on the "
                          "held-out fold; mean and population std over folds"},
        {"threshold", "mean of the fold thresholds on the squared Euclidean distance of L2-normalised embeddings "
                      "(same when below); threshold_cosine is the same threshold as a cosine similarity"},
        {"best_accuracy", "the original project's figure: mean of same- and different-pair accuracy, best over "
                          "Euclidean distance thresholds 0.4..1.8 step 0.01 (same when below)"},
        {"gap", "(mean different-pair distance - mean same-pair distance) / std of different-pair distances "
                "(ddof 1), Euclidean distance of L2-normalised embeddings"},
        {"tar_at_far", "cosine similarity; with N different pairs, floor(far * N) false accepts are allowed; a "
                       "pair is accepted when its similarity is above threshold_cosine; unsupported when "
                       "N < 1 / far"},
        {"auc", "area under the ROC of the cosine similarity (trapezoids, ties count half)"}}},
  };
}

std::string verification_summary(const VerificationResult& r) {
  std::string s = format("pairs: %lld (%lld same, %lld different)\n", (long long)r.pairs, (long long)r.same_pairs,
                         (long long)r.different_pairs);
  s += format("%d-fold accuracy: %.3f%% +- %.3f%%   threshold %.4f (squared distance; cosine %.4f)\n", r.folds,
              100 * r.kfold.accuracy_mean, 100 * r.kfold.accuracy_std, r.kfold.threshold_mean,
              1.0 - r.kfold.threshold_mean / 2.0);
  s += format("best balanced accuracy: %.3f%% at distance %.2f (same %.3f%%, different %.3f%%)   gap %.4f\n",
              100 * r.best.accuracy, r.best.threshold, 100 * r.best.same_accuracy, 100 * r.best.different_accuracy,
              r.gap);
  for (const TarAtFar& t : r.tar_at_far) {
    if (t.supported)
      s += format("TAR @ FAR %g: %.3f%%   (FAR reached %.3g, cosine > %.4f)\n", t.far_target, 100 * t.tar, t.far,
                  t.threshold);
    else
      s += format("TAR @ FAR %g: not supported (needs at least %.0f different pairs, have %lld)\n", t.far_target,
                  std::ceil(1.0 / t.far_target - 1e-9), (long long)r.different_pairs);
  }
  s += format("AUC: %.6f\n", r.auc);
  return s;
}

}  // namespace cuface::eval
