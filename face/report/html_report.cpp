#include "face/report/html_report.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "face/eval/inference_model.h"
#include "face/eval/report.h"
#include "face/report/svg_chart.h"
#include "layers/softmax_head.h"

namespace cuface::report {

namespace {

using eval::escape_xml;
using nlohmann::json;

const std::string kBlue = "#1f77b4", kOrange = "#ff7f0e", kGreen = "#2ca02c", kRed = "#d62728", kPurple = "#9467bd",
                  kBrown = "#8c564b", kGray = "#555555";

// A task as loss_debug.csv's column suffixes and valid.csv's task column name it.
struct TaskNames {
  std::string column, valid, color;
};
const TaskNames kTasks[] = {{"fr", "FR", kBlue}, {"gender", "Gender", kOrange}, {"age", "Age", kGreen}};

// The validation charts: per task, the figures of valid.csv drawn together.
struct FigureCurve {
  std::string figure, name, color;
};
struct ValidationChart {
  std::string task, title, y_label;
  std::vector<FigureCurve> figures;
};
const std::vector<ValidationChart>& validation_charts() {
  static const std::vector<ValidationChart> charts = {
      {"FR",
       "FR validation: verification accuracy",
       "accuracy",
       {{"accuracy_mean", "10-fold accuracy", kBlue}, {"best_accuracy", "best balanced accuracy", kOrange}}},
      {"FR", "FR validation: gap", "gap", {{"gap", "gap (different - same) / std", kBlue}}},
      {"FR",
       "FR validation: mean distances",
       "distance",
       {{"same_distance", "same person", kGreen}, {"different_distance", "different people", kRed}}},
      {"Gender",
       "Gender validation: accuracy",
       "accuracy",
       {{"average_accuracy", "average per class", kBlue}, {"accuracy", "overall", kOrange}}},  // top-2 of 2 is 1
      {"Age",
       "Age validation: accuracy",
       "accuracy",
       {{"average_accuracy", "average per class", kBlue},
        {"accuracy", "overall", kOrange},
        {"within_one_accuracy", "within one bin", kPurple},
        {"top2_accuracy", "top-2", kGreen},
        {"top3_accuracy", "top-3", kBrown}}},
  };
  return charts;
}

std::string printed(const char* pattern, double value) {
  char text[64];
  std::snprintf(text, sizeof text, pattern, value);
  return text;
}
std::string figure_text(double v) { return std::isfinite(v) ? printed("%.4g", v) : "n/a"; }
std::string percent_text(double v) { return std::isfinite(v) ? printed("%.2f%%", 100 * v) : "n/a"; }

double number_in(const json& object, const std::string& key) {
  return object.is_object() && object.contains(key) && object.at(key).is_number() ? object.at(key).get<double>() : NAN;
}
std::string string_in(const json& object, const std::string& key) {
  return object.is_object() && object.contains(key) && object.at(key).is_string() ? object.at(key).get<std::string>()
                                                                                  : "";
}

// A config value as a table cell: strings as they are, lists comma-separated.
std::string config_text(const json& value) {
  if (value.is_string()) return value.get<std::string>().empty() ? "(none)" : value.get<std::string>();
  if (!value.is_array()) return value.dump();
  if (value.empty()) return "(none)";
  std::string text;
  for (const json& element : value) text += (text.empty() ? "" : ", ") + config_text(element);
  return text;
}

// A per-step curve: as it is when short, else its bucket means over the min/max outline.
Curve step_curve(const Series& all, std::string name, std::string color, int buckets) {
  Curve curve{std::move(name), std::move(color), bucket_means(all, buckets), {}, false};
  if (curve.points.empty())
    curve.points = all;
  else
    curve.envelope = min_max_downsample(all, buckets);
  return curve;
}

// The highest TAR of the ROC at FAR <= each target (eval-fr's TAR@FAR read off its saved ROC),
// supported when the impostors allow one false accept.
std::vector<eval::TarAtFar> roc_marks(const eval::Roc& roc) {
  std::vector<eval::TarAtFar> marks;
  for (double target : {1e-1, 1e-2, 1e-3, 1e-4}) {
    eval::TarAtFar mark;
    mark.far_target = target;
    mark.supported = std::floor(target * double(roc.impostor) + 1e-9) >= 1;
    for (size_t i = 0; i < roc.far.size() && mark.supported; ++i)
      if (roc.far[i] <= target * (1 + 1e-12) && roc.tar[i] >= mark.tar)
        mark.tar = roc.tar[i], mark.far = roc.far[i], mark.threshold = roc.threshold[i];
    marks.push_back(mark);
  }
  return marks;
}

class PageWriter {
 public:
  PageWriter(const RunRecord& run, const ReportOptions& options) : run_(run), options_(options) {}

  Report write() {
    out_ << "<h1>cuface run report</h1>\n<p class=\"path\">" << escape_xml(run_.dir.string()) << "</p>\n";
    overview();
    training();
    validation();
    evaluations();
    configuration();
    return {page(), charts_};
  }

 private:
  void chart(const Chart& c) {
    out_ << "<figure>" << chart_svg(c) << "</figure>\n";
    ++charts_;
  }

  void table(const std::vector<std::pair<std::string, std::string>>& rows, const std::string& caption = "") {
    out_ << "<table class=\"figures\">";
    if (!caption.empty()) out_ << "<caption>" << escape_xml(caption) << "</caption>";
    for (const auto& [name, value] : rows)
      out_ << "<tr><th>" << escape_xml(name) << "</th><td>" << escape_xml(value) << "</td></tr>";
    out_ << "</table>\n";
  }

  // Counts and row percentages, each cell shaded by its share of the true class; `names` has at least
  // one name per class.
  void confusion(const std::string& caption, const eval::ConfusionMatrix& m, const std::vector<std::string>& names) {
    out_ << "<table class=\"confusion\"><caption>" << escape_xml(caption) << "</caption><tr><th>true \\ predicted</th>";
    for (int p = 0; p < m.classes; ++p) out_ << "<th>" << escape_xml(names[size_t(p)]) << "</th>";
    out_ << "</tr>\n";
    for (int t = 0; t < m.classes; ++t) {
      out_ << "<tr><th>" << escape_xml(names[size_t(t)]) << "</th>";
      for (int p = 0; p < m.classes; ++p) {
        const double rate = m.rate(t, p);
        const double shade = std::isfinite(rate) ? rate : 0;
        out_ << "<td style=\"background:rgba(31,119,180," << printed("%.2f", shade) << ")"
             << (shade > 0.55 ? ";color:#fff" : "") << "\">" << m.at(t, p) << "<small>"
             << (std::isfinite(rate) ? printed("%.0f%%", 100 * rate) : "") << "</small></td>";
      }
      out_ << "</tr>\n";
    }
    out_ << "</table>\n";
  }

  // valid.csv's tasks, FR, Gender and Age first.
  std::vector<std::string> validated_tasks() const {
    std::vector<std::string> tasks;
    for (const TaskNames& task : kTasks)
      if (run_.validation.count(task.valid)) tasks.push_back(task.valid);
    for (const auto& [task, figures] : run_.validation)
      if (std::find(tasks.begin(), tasks.end(), task) == tasks.end()) tasks.push_back(task);
    return tasks;
  }

  void overview() {
    const StepLog& log = run_.steps;
    const json& c = run_.config;
    std::vector<std::pair<std::string, std::string>> rows;
    rows.push_back({"task, arch", string_in(c, "task") + ", " + string_in(c, "arch")});
    const double planned = number_in(c, "steps");
    rows.push_back({"steps logged", step_text(log.step.back()) + (planned > 0 ? " of " + step_text(planned) : "")});
    const Series loss = log.series("loss");
    const size_t last = std::min<size_t>(100, loss.size());
    double sum = 0;
    for (size_t i = loss.size() - last; i < loss.size(); ++i) sum += loss.y[i];
    if (last > 0)
      rows.push_back({"loss (mean of the last " + std::to_string(last) + " steps)", figure_text(sum / double(last))});
    const Series lr = log.series("lr");
    if (!lr.empty()) rows.push_back({"learning rate at the last step", figure_text(lr.y.back())});
    Series speed = log.series("images_per_s");
    if (!speed.empty()) {
      std::nth_element(speed.y.begin(), speed.y.begin() + ptrdiff_t(speed.size() / 2), speed.y.end());
      rows.push_back({"images/s (median over steps)", figure_text(speed.y[speed.size() / 2])});
    }
    for (const std::string& task : validated_tasks()) {
      const std::map<std::string, Series>& figures = run_.validation.at(task);
      auto it = figures.find(task == "FR" ? "accuracy_mean" : "average_accuracy");
      if (it == figures.end() || it->second.empty()) continue;
      rows.push_back({task + " validation at step " + step_text(it->second.x.back()),
                      (task == "FR" ? "10-fold accuracy " : "average accuracy ") + percent_text(it->second.y.back())});
    }
    for (const std::string& note : run_.notes) rows.push_back({"note", note});
    table(rows);
  }

  void training() {
    const StepLog& log = run_.steps;
    const int buckets = options_.buckets;
    std::vector<const TaskNames*> tasks;
    for (const TaskNames& task : kTasks)
      if (!log.series("loss_" + task.column).empty()) tasks.push_back(&task);
    out_ << "<h2>Training</h2>\n";
    if (log.step.size() > 2 * size_t(buckets) + 2)
      out_ << "<p>" << log.step.size() << " logged steps: each curve is the mean of " << buckets
           << " equal ranges of steps, over the faint outline of every step's lowest and highest value.</p>\n";
    out_ << "<div class=\"charts\">\n";
    if (tasks.size() != 1)
      chart({tasks.empty() ? "Loss" : "Loss: the weighted sum of the tasks",
             "loss",
             false,
             {step_curve(log.series("loss"), "loss", kGray, buckets)},
             {}});
    for (const TaskNames* task : tasks)
      chart({task->valid + " loss",
             "loss",
             false,
             {step_curve(log.series("loss_" + task->column), task->valid + " loss", task->color, buckets)},
             {}});
    Chart accuracy{"Training accuracy (of each step's batch)", "accuracy", false, {}, {}};
    for (const TaskNames* task : tasks) {
      const Series s = log.series("accuracy_" + task->column);
      if (!s.empty()) accuracy.curves.push_back(step_curve(s, task->valid, task->color, buckets));
    }
    if (!accuracy.curves.empty()) chart(accuracy);

    const Series lr = log.series("lr");
    const std::string schedule = string_in(run_.config, "lr_schedule");
    std::vector<LrCut> cuts;
    if (schedule != "cosine") cuts = lr_cuts(lr);  // a cosine schedule lowers the rate every step
    if (!lr.empty()) {
      // The rate is flat between cuts: its outline is exact, a mean would blur the cuts.
      Chart c{"Learning rate" + (schedule.empty() ? "" : ", " + schedule + " schedule") +
                  (cuts.empty() ? "" : " (dashed: cuts)"),
              "learning rate",
              true,
              {{"lr", kPurple, min_max_downsample(lr, buckets), {}, false}},
              {}};
      for (const LrCut& cut : cuts) c.marks.push_back({cut.step, "\u00d7" + figure_text(cut.factor)});
      chart(c);
    }
    const Series speed = log.series("images_per_s");
    if (!speed.empty()) chart({"Throughput", "images/s", false, {step_curve(speed, "images/s", kBrown, buckets)}, {}});
    out_ << "</div>\n";
    if (!cuts.empty()) {
      out_ << "<p>Learning-rate cuts:";
      for (size_t i = 0; i < cuts.size(); ++i)
        out_ << (i ? "," : "") << " step " << step_text(cuts[i].step) << " \u00d7" << figure_text(cuts[i].factor);
      out_ << ".</p>\n";
    }
  }

  void validation() {
    out_ << "<h2>Validation</h2>\n";
    if (run_.validation.empty()) {
      out_ << "<p>No validation was recorded (valid.csv): train with <code>--valid-sets</code>.</p>\n";
      return;
    }
    out_ << "<div class=\"charts\">\n";
    for (const ValidationChart& v : validation_charts()) {
      auto task = run_.validation.find(v.task);
      if (task == run_.validation.end()) continue;
      Chart c{v.title, v.y_label, false, {}, {}};
      for (const FigureCurve& f : v.figures) {
        auto it = task->second.find(f.figure);
        if (it != task->second.end() && !it->second.empty())
          c.curves.push_back({f.name, f.color, it->second, {}, true});
      }
      if (!c.curves.empty()) chart(c);
    }
    out_ << "</div>\n<div class=\"tables\">\n";
    for (const std::string& task : validated_tasks()) last_validation(task, run_.validation.at(task));
    out_ << "</div>\n";
  }

  // The figures of the task's last validation; gender and age also as their confusion matrix.
  void last_validation(const std::string& task, const std::map<std::string, Series>& figures) {
    double step = -INFINITY;
    for (const auto& [name, series] : figures)
      if (!series.empty()) step = std::max(step, series.x.back());
    std::vector<std::pair<std::string, std::string>> rows;
    std::vector<std::array<int64_t, 3>> cells;  // truth, predicted, count
    for (const auto& [name, series] : figures) {
      if (series.empty() || series.x.back() != step) continue;
      int truth = 0, predicted = 0;
      if (std::sscanf(name.c_str(), "confusion_%d_%d", &truth, &predicted) == 2 && truth >= 0 && predicted >= 0)
        cells.push_back({truth, predicted, int64_t(std::llround(series.y.back()))});
      else
        rows.push_back({name, figure_text(series.y.back())});
    }
    if (rows.empty() && cells.empty()) return;
    out_ << "<div>\n";
    table(rows, task + " validation at step " + step_text(step));
    if (!cells.empty()) {
      eval::ConfusionMatrix m;
      for (const auto& cell : cells) m.classes = std::max(m.classes, int(std::max(cell[0], cell[1])) + 1);
      m.counts.assign(size_t(m.classes) * size_t(m.classes), 0);
      for (const auto& cell : cells) m.counts[size_t(cell[0]) * size_t(m.classes) + size_t(cell[1])] = cell[2];
      confusion(task + " confusion at step " + step_text(step), m, confusion_names(task, m.classes));
    }
    out_ << "</div>\n";
  }

  // valid.csv numbers the classes; gender's are male and female, age's are bins of the run's edges.
  std::vector<std::string> confusion_names(const std::string& task, int classes) const {
    if (task == "Gender" && classes <= 2) return {"male", "female"};
    std::vector<int> edges;
    if (task == "Age") {
      edges = default_age_edges();
      const json& configured = run_.config.contains("age_edges") ? run_.config.at("age_edges") : json();
      if (configured.is_array() && !configured.empty() &&
          std::all_of(configured.begin(), configured.end(), [](const json& e) { return e.is_number_integer(); }))
        edges = configured.get<std::vector<int>>();
    }
    return eval::age_class_names(edges, classes);  // without edges: "bin0", "bin1", ...
  }

  void evaluations() {
    out_ << "<h2>Evaluation</h2>\n";
    if (run_.evaluations.empty()) {
      out_ << "<p>No saved evaluation: <code>cuface report</code> reads the run's <code>eval/</code> folder and "
              "<code>--eval FILE</code> (outputs of <code>eval-fr --report/--roc</code> and "
              "<code>eval-attr --report</code>).</p>\n";
      return;
    }
    out_ << "<div class=\"tables\">\n";
    for (const Evaluation& e : run_.evaluations) {
      const std::string name = e.file.filename().string();
      const json& r = e.report;
      out_ << "<div>\n";
      switch (e.kind) {
        case Evaluation::Kind::Verification: {
          std::vector<std::pair<std::string, std::string>> rows;
          for (const char* key : {"model", "embeddings", "source"})
            if (!string_in(r, key).empty()) rows.push_back({key, string_in(r, key)});
          rows.push_back({"pairs", figure_text(number_in(r, "pairs")) + " (" + figure_text(number_in(r, "same_pairs")) +
                                       " same, " + figure_text(number_in(r, "different_pairs")) + " different)"});
          rows.push_back({"k-fold accuracy", percent_text(number_in(r, "accuracy_mean")) + " \u00b1 " +
                                                 percent_text(number_in(r, "accuracy_std"))});
          rows.push_back({"best balanced accuracy", percent_text(number_in(r, "best_accuracy"))});
          rows.push_back({"gap", figure_text(number_in(r, "gap"))});
          rows.push_back({"AUC", figure_text(number_in(r, "auc"))});
          if (r.at("tar_at_far").is_array())
            for (const json& t : r.at("tar_at_far"))
              rows.push_back({"TAR @ FAR " + figure_text(number_in(t, "far")), std::isfinite(number_in(t, "tar"))
                                                                                   ? percent_text(number_in(t, "tar"))
                                                                                   : "not supported"});
          table(rows, "Verification: " + name);
          break;
        }
        case Evaluation::Kind::SampledVerification: {
          std::vector<std::pair<std::string, std::string>> rows;
          if (!string_in(r, "source").empty()) rows.push_back({"source", string_in(r, "source")});
          rows.push_back(
              {"sets of pairs", figure_text(number_in(r, "repeat")) + " x " + figure_text(number_in(r, "sample"))});
          if (r.at("summary").is_object())
            for (const auto& [key, value] : r.at("summary").items())
              rows.push_back(
                  {key, figure_text(number_in(value, "mean")) + " \u00b1 " + figure_text(number_in(value, "std"))});
          table(rows, "Verification on sampled pairs: " + name);
          break;
        }
        case Evaluation::Kind::Attributes: {
          std::vector<std::pair<std::string, std::string>> rows{
              {"samples", figure_text(number_in(r, "samples"))},
              {"overall accuracy", percent_text(number_in(r, "overall_accuracy"))},
              {"average accuracy", percent_text(number_in(r, "average_accuracy"))}};
          if (r.contains("mae")) rows.push_back({"mean absolute error (classes)", figure_text(number_in(r, "mae"))});
          if (r.contains("within_one")) rows.push_back({"within one class", percent_text(number_in(r, "within_one"))});
          table(rows, "Attributes: " + name);
          eval::ConfusionMatrix m;
          const std::vector<std::string> names = r.at("classes").get<std::vector<std::string>>();
          m.classes = int(names.size());
          for (const json& row : r.at("confusion"))
            for (const json& count : row) m.counts.push_back(count.get<int64_t>());
          confusion("Confusion: " + name, m, names);
          break;
        }
        case Evaluation::Kind::Roc: {
          const std::vector<eval::TarAtFar> marks = roc_marks(e.roc);
          out_ << "<figure class=\"roc\">" << eval::roc_svg(e.roc, "ROC: " + name, marks) << "</figure>\n";
          ++charts_;
          break;
        }
      }
      out_ << "</div>\n";
    }
    out_ << "</div>\n";
  }

  void configuration() {
    out_ << "<h2>Configuration</h2>\n";
    std::vector<std::pair<std::string, std::string>> rows;
    for (const auto& [key, value] : run_.config.items()) rows.push_back({key, config_text(value)});
    table(rows, "config.json");
  }

  std::string page() const;

  const RunRecord& run_;
  const ReportOptions& options_;
  std::ostringstream out_;
  int charts_ = 0;
};

const char* const kStyle = R"(
body { font: 14px/1.4 system-ui, sans-serif; color: #222; margin: 24px auto; max-width: 1500px; padding: 0 16px; }
h1 { margin-bottom: 0; } .path { color: #666; margin-top: 4px; font-family: monospace; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: 4px; margin-top: 32px; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 12px; }
.tables { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
figure { margin: 0; } figure svg { width: 100%; height: auto; display: block; }
figure.roc { max-width: 640px; }
svg.chart text { font: 12px system-ui, sans-serif; fill: #333; }
svg.chart text.title { font-weight: 600; font-size: 14px; }
svg.chart .grid line { stroke: #e6e6e6; }
svg.chart .frame { fill: none; stroke: #999; }
svg.chart polyline { fill: none; stroke-linejoin: round; }
svg.chart polyline.series { stroke-width: 1.8; }
svg.chart polyline.envelope { stroke-width: 1; stroke-opacity: 0.28; }
svg.chart line.mark { stroke: #d62728; stroke-dasharray: 4 3; }
svg.chart text.mark { fill: #d62728; font-size: 11px; }
svg.chart line.guide { stroke: #888; }
table { border-collapse: collapse; margin: 8px 0; }
caption { text-align: left; font-weight: 600; padding: 4px 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
table.figures th { font-weight: normal; color: #555; background: #fafafa; }
table.confusion td { text-align: right; min-width: 3.5em; }
table.confusion small { display: block; font-size: 11px; opacity: 0.8; }
#readout { position: absolute; display: none; pointer-events: none; white-space: pre; background: #fff;
           border: 1px solid #aaa; padding: 4px 6px; font: 12px monospace; box-shadow: 1px 1px 4px #0002; }
)";

// Reads values back under the mouse: the charts' data-* attributes map SVG units to steps and values.
// It also writes each chart's point count (data-points) and, once done, body's data-ready, which
// tests read from the rendered page.
const char* const kScript = R"(
(function () {
  const readout = document.getElementById('readout');
  const charts = document.querySelectorAll('svg.chart');
  for (const svg of charts) {
    const d = svg.dataset;
    const left = +d.left, top = +d.top, width = +d.width, height = +d.height;
    const x0 = +d.x0, x1 = +d.x1, y0 = +d.y0, y1 = +d.y1, log = d.log === '1';
    const valueAt = (y) => {
      const f = (top + height - y) / height;
      return log ? Math.pow(10, Math.log10(y0) + f * (Math.log10(y1) - Math.log10(y0))) : y0 + f * (y1 - y0);
    };
    const curves = Array.from(svg.querySelectorAll('polyline.series'), (line) => ({
      name: line.dataset.name,
      points: line.getAttribute('points').trim().split(/\s+/).filter(Boolean).map((p) => p.split(',').map(Number)),
    }));
    svg.dataset.points = curves.reduce((n, c) => n + c.points.length, 0);
    const guide = document.createElementNS('http://www.w3.org/2000/svg', 'line');
    guide.setAttribute('class', 'guide');
    guide.setAttribute('y1', top);
    guide.setAttribute('y2', top + height);
    guide.style.display = 'none';
    svg.appendChild(guide);
    const hide = () => { guide.style.display = 'none'; readout.style.display = 'none'; };
    svg.addEventListener('mouseleave', hide);
    svg.addEventListener('mousemove', (event) => {
      const p = new DOMPoint(event.clientX, event.clientY).matrixTransform(svg.getScreenCTM().inverse());
      if (p.x < left || p.x > left + width) return hide();
      const lines = ['step ' + Math.round(x0 + (p.x - left) / width * (x1 - x0))];
      for (const c of curves) {
        let nearest = null;
        for (const q of c.points) if (!nearest || Math.abs(q[0] - p.x) < Math.abs(nearest[0] - p.x)) nearest = q;
        if (nearest) lines.push(c.name + ': ' + valueAt(nearest[1]).toPrecision(4));
      }
      guide.setAttribute('x1', p.x);
      guide.setAttribute('x2', p.x);
      guide.style.display = '';
      readout.textContent = lines.join('\n');
      readout.style.left = event.pageX + 14 + 'px';
      readout.style.top = event.pageY + 14 + 'px';
      readout.style.display = 'block';
    });
  }
  document.body.dataset.ready = charts.length;
})();
)";

std::string PageWriter::page() const {
  return "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>cuface report: " +
         escape_xml(run_.dir.filename().empty() ? run_.dir.string() : run_.dir.filename().string()) +
         "</title>\n<style>" + kStyle + "</style>\n</head>\n<body>\n" + out_.str() +
         "<div id=\"readout\"></div>\n<script>" + kScript + "</script>\n</body>\n</html>\n";
}

}  // namespace

Report make_report(const RunRecord& run, const ReportOptions& options) { return PageWriter(run, options).write(); }

}  // namespace cuface::report
