// `cuface eval-attr`: gender or age classification accuracy from a predictions file, or of a model's
// gender/age head run over labelled images (--model --task --images).
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>

#include "engine/atomic_file.h"
#include "engine/error.h"
#include "face/cli/commands.h"
#include "face/cli/inference.h"
#include "face/eval/attributes.h"
#include "face/eval/report.h"
#include "layers/softmax_head.h"

namespace cuface::cli {

namespace fs = std::filesystem;

namespace {

struct EvalAttrOptions {
  fs::path predictions, lfw_names, csv, report;
  std::string truth;  // column, folder, utkface-gender, utkface-age, lfw-gender
  std::vector<int> age_edges;
  std::vector<std::string> classes;
  InferenceFlags model;  // --model and its input flags
  std::string task;      // with --model: gender | age
  fs::path images;       // with --model
};

struct Row {
  int line = 0;
  std::string path, predicted, truth;  // truth: from the `true` column when there is one
};

std::vector<std::string> split_csv(const std::string& line) {
  std::vector<std::string> fields;
  std::istringstream in(line);
  for (std::string f; std::getline(in, f, ',');) fields.push_back(f);
  if (!line.empty() && line.back() == ',') fields.emplace_back();
  return fields;
}

// A header naming the columns `path`, `predicted` and optionally `true`, then one row per image.
std::vector<Row> read_predictions(const fs::path& file, bool& has_truth) {
  std::ifstream in(file);
  if (!in) throw Error("cannot open " + file.string());
  std::string line;
  if (!std::getline(in, line)) throw Error(file.string() + " is empty (expected a header 'path,predicted,true')");
  if (!line.empty() && line.back() == '\r') line.pop_back();
  const std::vector<std::string> header = split_csv(line);
  int path_col = -1, predicted_col = -1, truth_col = -1;
  for (size_t i = 0; i < header.size(); ++i) {
    if (header[i] == "path") path_col = int(i);
    if (header[i] == "predicted") predicted_col = int(i);
    if (header[i] == "true") truth_col = int(i);
  }
  if (path_col < 0 || predicted_col < 0)
    throw Error(file.string() + ":1: the header must name the columns 'path' and 'predicted' (and 'true' when the "
                                "labels are not taken from the paths), found '" + line + "'");
  has_truth = truth_col >= 0;

  std::vector<Row> rows;
  for (int number = 2; std::getline(in, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    const std::vector<std::string> f = split_csv(line);
    if (f.size() != header.size())
      throw Error(file.string() + ":" + std::to_string(number) + ": " + std::to_string(f.size()) + " fields, the header has " +
                  std::to_string(header.size()) + " (paths with commas are not supported)");
    rows.push_back({number, f[size_t(path_col)], f[size_t(predicted_col)], has_truth ? f[size_t(truth_col)] : ""});
  }
  if (rows.empty()) throw Error(file.string() + " has no predictions");
  return rows;
}

// "'a', 'b', 'c', ..." (the first few) for messages.
std::string joined(const std::set<std::string>& names) {
  std::string text;
  size_t shown = 0;
  for (const std::string& name : names) {
    if (shown++ == 5) return text + ", ...";
    text += (text.empty() ? "'" : ", '") + name + "'";
  }
  return text;
}

// A gender folder named 0/1, m/f, man/woman reads as the model's male/female.
std::string gender_word(const std::string& label) {
  std::string l = label;
  std::transform(l.begin(), l.end(), l.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  if (l == "0" || l == "m" || l == "man" || l == "male") return "male";
  if (l == "1" || l == "f" || l == "woman" || l == "female") return "female";
  return label;
}

// --model: the head's prediction for each image under --images (age: the bin index, as --age-edges
// numbers the true bins).
std::vector<Row> predict_rows(EvalAttrOptions& o) {
  const Task task = parse_task(o.task);
  CUFACE_CHECK(task != Task::FR, "--task: eval-attr evaluates the gender or the age head");
  const std::vector<fs::path> files = eval::list_images(o.images);
  Inference inference = start_inference(o.model, task == Task::Gender ? eval::Output::Gender : eval::Output::Age);
  const Predictions p = predict(inference, task, eval::file_source(files), o.model.strict);
  if (task == Task::Age && o.age_edges.empty()) o.age_edges = inference.model.age_edges;
  std::vector<Row> rows;
  for (size_t k = 0; k < p.result.kept.size(); ++k)
    rows.push_back({int(k + 1), files[p.result.kept[k]].string(),
                    task == Task::Gender ? p.names[size_t(p.label[k])] : std::to_string(p.label[k]), ""});
  CUFACE_CHECK(!rows.empty(), "no image could be classified");
  return rows;
}

void run_eval_attr(EvalAttrOptions o) {
  check_output_folder("--csv", o.csv);
  check_output_folder("--report", o.report);
  bool has_truth = false;
  const bool model = !o.model.model.empty();
  std::vector<Row> rows = model ? predict_rows(o) : read_predictions(o.predictions, has_truth);
  const std::string input = model ? o.model.model : o.predictions.string();
  const std::string truth_source = !o.truth.empty() ? o.truth : has_truth ? "column" : "";
  if (truth_source.empty())
    throw Error(input + " has no 'true' column: say where the labels come from with --truth");
  if (truth_source == "column" && !has_truth) throw Error("--truth column: " + input + " has no 'true' column");
  if (truth_source == "utkface-age" && o.age_edges.empty())
    throw Error("--truth utkface-age needs --age-edges (the first ages of age classes 1.., e.g. 13,20,30,40,50,60)");
  check_age_edges(o.age_edges, "--age-edges");

  eval::LfwGender lfw;
  if (truth_source == "lfw-gender") {
    if (o.lfw_names.empty()) throw Error("--truth lfw-gender needs --lfw-names DIR (with male_names.txt and female_names.txt)");
    lfw = eval::read_lfw_gender(o.lfw_names / "male_names.txt", o.lfw_names / "female_names.txt");
  }

  std::vector<std::string> truth, predicted;
  int skipped = 0;
  for (const Row& row : rows) {
    const std::string where = model ? row.path : o.predictions.string() + ":" + std::to_string(row.line);
    const std::string file_name = fs::path(row.path).filename().string();
    std::string label;
    if (truth_source == "column") {
      label = row.truth;
    } else if (truth_source == "folder") {
      const fs::path folder = fs::path(row.path).parent_path();
      label = folder.filename().string();
      if (label.empty()) throw Error(where + ": '" + row.path + "' has no folder to take the label from");
      std::error_code error;
      if (model && fs::is_directory(o.images) && fs::equivalent(folder, o.images, error))
        throw Error("--truth folder: '" + row.path + "' lies directly in --images " + o.images.string() +
                    ", not in a class folder (expected " + o.images.string() + "/<label>/<image>)");
      if (model && o.task == "gender") label = gender_word(label);
    } else if (truth_source == "utkface-gender" || truth_source == "utkface-age") {
      const auto utk = eval::parse_utkface_name(file_name);
      if (!utk) throw Error(where + ": '" + file_name + "' is not a UTKFace name (AGE_GENDER_RACE_DATE.jpg...)");
      label = truth_source == "utkface-gender" ? (utk->gender == 0 ? "male" : "female")
                                               : std::to_string(age_to_bin(utk->age, o.age_edges));
    } else {
      auto it = lfw.gender_of.find(file_name);
      if (it == lfw.gender_of.end()) {
        ++skipped;  // in neither list, or in both
        continue;
      }
      label = it->second;
    }
    truth.push_back(label);
    predicted.push_back(row.predicted);
  }
  if (truth.empty()) throw Error("no prediction has a known true label");
  if (truth_source == "folder") {
    // Folders that are not classes (all images in one "images" folder) would score 0%, silently.
    const std::set<std::string> true_set(truth.begin(), truth.end()), predicted_set(predicted.begin(), predicted.end());
    if (std::none_of(true_set.begin(), true_set.end(), [&](const std::string& l) { return predicted_set.count(l); }))
      throw Error("--truth folder: no image's folder is one of the predicted classes (folders: " + joined(true_set) +
                  "; predicted: " + joined(predicted_set) + "): the images must lie in <label>/ folders");
  }

  const eval::ClassTable table = eval::make_class_table(truth, predicted, o.classes);
  const eval::ConfusionMatrix m = eval::confusion_matrix(table.truth, table.predicted, int(table.names.size()));

  std::printf("samples: %zu, %zu classes (labels: %s)%s\n", truth.size(), table.names.size(), truth_source.c_str(),
              skipped ? (", " + std::to_string(skipped) + " skipped without a label").c_str() : "");
  std::printf("%s\n", eval::format_confusion(m, table.names).c_str());
  std::printf("per-class accuracy:");
  nlohmann::json class_accuracy = nlohmann::json::object();
  for (int c = 0; c < m.classes; ++c) {
    const double a = m.class_accuracy(c);
    if (m.row_total(c) > 0) std::printf("  %s %.2f%%", table.names[size_t(c)].c_str(), 100 * a);
    class_accuracy[table.names[size_t(c)]] = m.row_total(c) > 0 ? nlohmann::json(a) : nlohmann::json(nullptr);
  }
  std::printf("\noverall accuracy: %.3f%%   average accuracy (mean of the diagonal): %.3f%%\n",
              100 * m.overall_accuracy(), 100 * m.average_accuracy());

  nlohmann::json report = {{"samples", truth.size()},
                           {"skipped", skipped},
                           {"labels", truth_source},
                           {"classes", table.names},
                           {"confusion", nlohmann::json::array()},
                           {"class_accuracy", class_accuracy},
                           {"overall_accuracy", m.overall_accuracy()},
                           {"average_accuracy", m.average_accuracy()}};
  for (int t = 0; t < m.classes; ++t)
    report["confusion"].push_back(std::vector<int64_t>(m.counts.begin() + t * m.classes, m.counts.begin() + (t + 1) * m.classes));

  if (table.numeric) {
    // Ordered bins: the class names are their (integer) values. Within-one compares values, not the
    // table's positions: with bins 0, 3 and 6 present, 0 and 3 are neighbours in the table, not bins.
    std::vector<double> truth_value, predicted_value;
    std::vector<int> truth_bin, predicted_bin;
    for (size_t i = 0; i < table.truth.size(); ++i) {
      truth_value.push_back(std::stod(table.names[size_t(table.truth[i])]));
      predicted_value.push_back(std::stod(table.names[size_t(table.predicted[i])]));
      truth_bin.push_back(int(std::lround(truth_value.back())));
      predicted_bin.push_back(int(std::lround(predicted_value.back())));
    }
    const double mae = eval::mean_absolute_error(truth_value, predicted_value);
    const double within_one = eval::within_one_accuracy(truth_bin, predicted_bin);
    std::printf("mean absolute error: %.4f (class units)   within one class: %.3f%%\n", mae, 100 * within_one);
    report["mae"] = mae;
    report["within_one"] = within_one;
  }

  if (!o.csv.empty()) write_file_atomically(o.csv, eval::confusion_csv(m, table.names));
  if (!o.report.empty()) eval::write_json(o.report, report);
  std::printf("eval-attr: %s, %zu samples: accuracy %.3f%%, average accuracy %.3f%%\n", input.c_str(),
              truth.size(), 100 * m.overall_accuracy(), 100 * m.average_accuracy());
}

}  // namespace

void add_eval_attr_command(CLI::App& app) {
  auto options = std::make_shared<EvalAttrOptions>();
  CLI::App* cmd = app.add_subcommand(
      "eval-attr",
      "Gender or age accuracy from predictions: confusion matrix (count and row-normalised), per-class, overall "
      "and average accuracy, MAE and within-one-bin accuracy for ordered (integer) classes");
  CLI::Option* predictions =
      cmd->add_option("--predictions", options->predictions,
                      "CSV with a header naming 'path', 'predicted' and optionally 'true' columns")
          ->check(CLI::ExistingFile);
  add_inference_flags(cmd, options->model, false, false);
  CLI::Option* model = cmd->get_option("--model");
  predictions->excludes(model);
  cmd->add_option("--task", options->task, "With --model: gender or age (the head to run)")
      ->check(CLI::IsMember({"gender", "age"}))
      ->needs(model);
  cmd->add_option("--images", options->images,
                  "With --model: the labelled images, a folder (recursively) or a list file; say where labels come from "
                  "with --truth folder|utkface-gender|utkface-age|lfw-gender")
      ->needs(model);
  cmd->add_option("--truth", options->truth,
                  "Where the true label comes from: column (the 'true' column, the default when present), folder "
                  "(the image's folder, DIR/<label>/x.jpg), utkface-gender, utkface-age (from UTKFace file names), "
                  "lfw-gender (LFW's male/female name lists)")
      ->check(CLI::IsMember({"column", "folder", "utkface-gender", "utkface-age", "lfw-gender"}));
  cmd->add_option("--age-edges", options->age_edges,
                  "First ages of age classes 1.. for utkface-age, as train's (default: the model's with --model)")
      ->delimiter(',');
  cmd->add_option("--lfw-names", options->lfw_names, "Folder with LFW's male_names.txt and female_names.txt")
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--classes", options->classes, "Class names in display order, e.g. male,female (default: sorted)")
      ->delimiter(',');
  cmd->add_option("--csv", options->csv, "Write the confusion matrix (counts) as CSV");
  cmd->add_option("--report", options->report, "Write every figure as JSON");
  cmd->callback([options] {
    if (options->predictions.empty() == options->model.model.empty())
      throw CLI::RequiredError("eval-attr: --predictions FILE or --model CKPT|RUN_DIR");
    if (!options->model.model.empty() && options->task.empty()) throw CLI::RequiredError("eval-attr --model: --task gender|age");
    if (!options->model.model.empty() && options->images.empty()) throw CLI::RequiredError("eval-attr --model: --images");
    run_eval_attr(*options);
  });
}

}  // namespace cuface::cli
