#include "face/report/run_log.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <string_view>

#include "engine/error.h"

namespace cuface::report {

namespace fs = std::filesystem;

namespace {

// A CSV file as cuface writes them (a header line, then rows of unquoted fields), read one row at a
// time so that a million-row loss_debug.csv is never held as text. Errors name the file and line.
class CsvReader {
 public:
  explicit CsvReader(const fs::path& file) : file_(file), in_(file) {
    if (!in_) throw Error("cannot open " + file_.string());
    std::string line;
    if (!std::getline(in_, line) || trim(line).empty()) throw Error(file_.string() + " is empty (no header line)");
    header_text_ = std::string(trim(line));
    for (std::string_view name : split(header_text_)) header_.emplace_back(name);
    line_ = 1;
  }

  // Where the current row is, for messages: FILE:LINE.
  std::string where() const { return file_.string() + ":" + std::to_string(line_); }

  int column(const std::string& name) const {
    auto it = std::find(header_.begin(), header_.end(), name);
    if (it == header_.end())
      throw Error(file_.string() + ":1: no column '" + name + "' in the header '" + header_text_ + "'");
    return int(it - header_.begin());
  }
  const std::vector<std::string>& header() const { return header_; }

  // The next row's fields (views into this reader, valid until the next call); false at the end. A
  // last line without its newline that has too few fields is the row a running trainer is still
  // writing: it is left out and `incomplete_last_line` says so.
  bool next(std::vector<std::string_view>& fields) {
    while (std::getline(in_, row_)) {
      ++line_;
      const bool terminated = !in_.eof();
      const std::string_view text = trim(row_);
      if (text.empty()) continue;
      fields = split(text);
      if (fields.size() == header_.size()) return true;
      if (!terminated && fields.size() < header_.size()) {
        incomplete_last_line = true;
        return false;
      }
      throw Error(where() + ": " + std::to_string(fields.size()) + " fields, the header has " +
                  std::to_string(header_.size()));
    }
    return false;
  }

  // A field as a number: empty (a value not recorded) and JSON's null read as NaN.
  double number(std::string_view field, int column) const {
    if (field.empty() || field == "null") return NAN;
    double value = 0;
    const auto [end, error] = std::from_chars(field.data(), field.data() + field.size(), value);
    if (error != std::errc() || end != field.data() + field.size())
      throw Error(where() + ": " + header_[size_t(column)] + " is '" + std::string(field) + "', not a number");
    return value;
  }

  bool incomplete_last_line = false;

 private:
  static std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.back() == '\r' || s.back() == ' ')) s.remove_suffix(1);
    return s;
  }
  static std::vector<std::string_view> split(std::string_view s) {
    std::vector<std::string_view> fields;
    for (size_t start = 0;;) {
      const size_t comma = s.find(',', start);
      fields.push_back(s.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start));
      if (comma == std::string_view::npos) return fields;
      start = comma + 1;
    }
  }

  fs::path file_;
  std::ifstream in_;
  std::string header_text_, row_;
  std::vector<std::string> header_;
  int line_ = 0;
};

// A resumed run logs again the steps after its checkpoint: a step at or below the last one read
// starts over from there.
size_t rows_before(const std::vector<double>& steps, double step) {
  return size_t(std::lower_bound(steps.begin(), steps.end(), step) - steps.begin());
}

StepLog read_step_log(const fs::path& file, std::vector<std::string>& notes) {
  CsvReader csv(file);
  const int step_column = csv.column("step");
  for (const char* needed : {"lr", "loss"}) csv.column(needed);  // the columns every chart needs
  StepLog log;
  std::vector<std::vector<double>*> columns;
  for (const std::string& name : csv.header()) columns.push_back(name == "step" ? &log.step : &log.columns[name]);
  std::vector<std::string_view> fields;
  while (csv.next(fields)) {
    const double step = csv.number(fields[size_t(step_column)], step_column);
    if (!std::isfinite(step))
      throw Error(csv.where() + ": the step is '" + std::string(fields[size_t(step_column)]) + "'");
    if (!log.step.empty() && step <= log.step.back()) {
      const size_t keep = rows_before(log.step, step);
      for (std::vector<double>* column : columns) column->resize(keep);
    }
    for (size_t c = 0; c < fields.size(); ++c) columns[c]->push_back(csv.number(fields[c], int(c)));
  }
  if (csv.incomplete_last_line) notes.push_back(file.string() + ": left out the last line, not yet complete");
  if (log.step.empty()) throw Error(file.string() + " has no rows: the run has not finished a step yet");
  return log;
}

ValidationLog read_validation_log(const fs::path& file, std::vector<std::string>& notes) {
  CsvReader csv(file);
  const int step = csv.column("step"), task = csv.column("task"), figure = csv.column("figure"),
            value = csv.column("value");
  ValidationLog log;
  std::vector<std::string_view> fields;
  while (csv.next(fields)) {
    const double at = csv.number(fields[size_t(step)], step);
    if (!std::isfinite(at)) throw Error(csv.where() + ": the step is '" + std::string(fields[size_t(step)]) + "'");
    const double v = csv.number(fields[size_t(value)], value);
    Series& series = log[std::string(fields[size_t(task)])][std::string(fields[size_t(figure)])];
    const size_t keep = rows_before(series.x, at);  // a validation repeated after a resume replaces the first
    series.x.resize(keep), series.y.resize(keep);
    if (std::isfinite(v)) series.add(at, v);
  }
  if (csv.incomplete_last_line) notes.push_back(file.string() + ": left out the last line, not yet complete");
  return log;
}

nlohmann::json read_json_file(const fs::path& file) {
  std::ifstream in(file);
  if (!in) throw Error("cannot open " + file.string());
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw Error(file.string() + " is not valid JSON: " + e.what());
  }
}

eval::Roc read_roc(const fs::path& file) {
  CsvReader csv(file);
  if (csv.header() != std::vector<std::string>{"threshold", "far", "tar"})
    throw Error(file.string() + ":1: not an `eval-fr --roc` file (its header is 'threshold,far,tar')");
  eval::Roc roc;
  std::vector<std::string_view> fields;
  while (csv.next(fields)) {
    const double far = csv.number(fields[1], 1), tar = csv.number(fields[2], 2);
    if (!(far >= 0 && far <= 1 && tar >= 0 && tar <= 1))
      throw Error(csv.where() + ": far and tar are rates between 0 and 1");
    roc.threshold.push_back(csv.number(fields[0], 0));
    roc.far.push_back(far);
    roc.tar.push_back(tar);
  }
  if (roc.far.size() < 2) throw Error(file.string() + " has fewer than 2 ROC points");
  // The smallest step of a rate is one pair: 1 / impostors, 1 / genuine pairs.
  auto pairs_from = [](const std::vector<double>& rate) {
    double smallest = 1;
    for (double r : rate)
      if (r > 0) smallest = std::min(smallest, r);
    return int64_t(std::llround(1 / smallest));
  };
  roc.impostor = pairs_from(roc.far);
  roc.genuine = pairs_from(roc.tar);
  return roc;
}

// eval-attr's confusion must be a square table of counts, one row and column per class.
void check_confusion(const fs::path& file, const nlohmann::json& report) {
  const nlohmann::json& classes = report.at("classes");
  const nlohmann::json& confusion = report.at("confusion");
  bool square = classes.is_array() && confusion.is_array() && confusion.size() == classes.size();
  for (const nlohmann::json& name : classes) square = square && name.is_string();
  for (const nlohmann::json& row : confusion) {
    square = square && row.is_array() && row.size() == classes.size();
    for (const nlohmann::json& count : row) square = square && count.is_number_integer();
  }
  if (!square)
    throw Error(file.string() + ": 'confusion' is not a table of counts with one row and column per class name");
}

}  // namespace

Series StepLog::series(const std::string& column) const {
  auto it = columns.find(column);
  return it == columns.end() ? Series{} : finite_points(step, it->second);
}

Evaluation read_evaluation(const fs::path& file) {
  Evaluation e;
  e.file = file;
  if (file.extension() == ".csv") {
    e.kind = Evaluation::Kind::Roc;
    e.roc = read_roc(file);
    return e;
  }
  if (file.extension() != ".json")
    throw Error(file.string() +
                ": not an evaluation output (eval-fr --report or --roc, eval-attr --report: .json or .csv)");
  e.report = read_json_file(file);
  const nlohmann::json& r = e.report;
  if (r.is_object() && r.contains("tar_at_far")) {
    e.kind = Evaluation::Kind::Verification;
  } else if (r.is_object() && r.contains("summary") && r.contains("repeats")) {
    e.kind = Evaluation::Kind::SampledVerification;
  } else if (r.is_object() && r.contains("confusion") && r.contains("classes")) {
    e.kind = Evaluation::Kind::Attributes;
    check_confusion(file, r);
  } else {
    throw Error(file.string() +
                " is not an `eval-fr --report` or `eval-attr --report` file (no 'tar_at_far', "
                "'summary' or 'confusion' key)");
  }
  return e;
}

RunRecord read_run(const fs::path& dir, const std::vector<fs::path>& evaluation_files) {
  if (!fs::exists(dir)) throw Error(dir.string() + ": no such run folder");
  if (!fs::is_directory(dir)) throw Error(dir.string() + " is a file, not a run folder");
  const fs::path config = dir / "config.json", losses = dir / "loss_debug.csv";
  if (!fs::exists(config) && !fs::exists(losses))
    throw Error(dir.string() +
                " is not a run folder: it has no config.json or loss_debug.csv (give the folder "
                "`cuface train --out` wrote)");
  if (!fs::exists(config)) throw Error(config.string() + " is missing: is " + dir.string() + " a run folder?");
  if (!fs::exists(losses)) throw Error(losses.string() + " is missing: the run has not logged a step yet");

  RunRecord run;
  run.dir = dir;
  run.config = read_json_file(config);
  if (!run.config.is_object()) throw Error(config.string() + " is not a JSON object of settings");
  run.steps = read_step_log(losses, run.notes);
  if (fs::exists(dir / "valid.csv")) run.validation = read_validation_log(dir / "valid.csv", run.notes);

  if (fs::is_directory(dir / "eval")) {
    std::vector<fs::path> found;
    for (const fs::directory_entry& entry : fs::directory_iterator(dir / "eval"))
      if (entry.is_regular_file() && (entry.path().extension() == ".json" || entry.path().extension() == ".csv"))
        found.push_back(entry.path());
    std::sort(found.begin(), found.end());
    for (const fs::path& file : found) {
      try {
        run.evaluations.push_back(read_evaluation(file));
      } catch (const Error& e) {
        run.notes.push_back(std::string("skipped ") + e.what());
      }
    }
  }
  for (const fs::path& file : evaluation_files) run.evaluations.push_back(read_evaluation(file));
  return run;
}

}  // namespace cuface::report
