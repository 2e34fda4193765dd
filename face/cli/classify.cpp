// `cuface classify`: sort an unlabelled folder by a gender or age head, as the original project built
// its labelled gender sample from MS-Celeb-1M: each image goes into OUTDIR/<predicted label>/ (a hard
// link when OUTDIR is on the same file system, else a copy) and OUTDIR/scores.csv holds every image's
// class probabilities. --limit N classifies a random sample of N images (--seed fixes which).
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <set>
#include <sstream>

#include "engine/atomic_file.h"
#include "engine/philox.h"
#include "face/cli/commands.h"
#include "face/cli/inference.h"

namespace cuface::cli {

namespace fs = std::filesystem;

namespace {

struct ClassifyArgs {
  InferenceFlags flags;
  std::string task;
  fs::path images, out;
  int64_t limit = 0;
  uint64_t seed = 1;
};

// A name for `file` inside its label folder that no other image takes: the path below the image
// root with '/' turned into '__' (LFW's Name/Name_0001.jpg -> Name__Name_0001.jpg).
std::string flat_name(const fs::path& file, const fs::path& root) {
  const fs::path relative = fs::is_directory(root) ? file.lexically_relative(root) : file.filename();
  std::string name = relative.empty() || *relative.begin() == ".." ? file.filename().string() : relative.generic_string();
  for (size_t at; (at = name.find('/')) != std::string::npos;) name.replace(at, 1, "__");
  return name;
}

// Hard link, else copy (another file system, or links not allowed).
bool place(const fs::path& from, const fs::path& to) {
  std::error_code error;
  fs::remove(to, error);
  fs::create_hard_link(from, to, error);
  if (!error) return true;
  fs::copy_file(from, to, fs::copy_options::overwrite_existing);
  return false;
}

void run_classify(const ClassifyArgs& a) {
  const Task task = parse_task(a.task);
  CUFACE_CHECK(task != Task::FR, "--task: classify runs the gender or the age head");
  // An earlier run's label folders would mix with this run's and disagree with the new scores.csv.
  if (fs::exists(a.out))
    CUFACE_CHECK(fs::is_directory(a.out) && fs::is_empty(a.out),
                 "--out " + a.out.string() + " exists and is not an empty folder: choose a new one");
  std::vector<fs::path> files = eval::list_images(a.images);
  const size_t listed = files.size();
  if (a.limit > 0 && size_t(a.limit) < files.size()) {
    const std::vector<int64_t> order = philox_permutation(int64_t(files.size()), a.seed, 0);
    std::vector<int64_t> chosen(order.begin(), order.begin() + a.limit);
    std::sort(chosen.begin(), chosen.end());  // keep the listing's order
    std::vector<fs::path> sample;
    for (int64_t i : chosen) sample.push_back(files[size_t(i)]);
    files = std::move(sample);
  }
  Inference inference = start_inference(a.flags, task == Task::Gender ? eval::Output::Gender : eval::Output::Age);
  const eval::ImageSource source = eval::file_source(files);
  const Predictions p = predict(inference, task, source, a.flags.strict);

  fs::create_directories(a.out);
  std::ostringstream csv;
  csv << "path,predicted";
  for (const std::string& name : p.names) csv << ",p_" << name;
  csv << "\n";
  std::map<std::string, int64_t> counts;
  std::set<std::string> taken;  // "label/name": a list file may name equal file names in two folders
  int64_t linked = 0;
  for (size_t k = 0; k < p.result.kept.size(); ++k) {
    const fs::path& file = files[p.result.kept[k]];
    const std::string& label = p.names[size_t(p.label[k])];
    const fs::path folder = a.out / label;
    fs::create_directories(folder);
    std::string name = flat_name(file, a.images);
    for (int n = 2; !taken.insert(label + "/" + name).second; ++n)
      name = file.stem().string() + "_" + std::to_string(n) + file.extension().string();
    linked += place(file, folder / name) ? 1 : 0;
    ++counts[label];
    csv << file.string() << "," << label;
    for (double v : p.probability[k]) csv << "," << v;
    csv << "\n";
  }
  write_file_atomically(a.out / "scores.csv", csv.str());

  std::string per_label;
  for (const auto& [label, n] : counts) per_label += (per_label.empty() ? "" : ", ") + label + " " + std::to_string(n);
  std::printf("classify: %zu of %zu images by %s -> %s (%s; %lld linked, %lld copied), %zu skipped, scores in %s\n",
              p.result.kept.size(), listed, task_name(task), a.out.string().c_str(), per_label.c_str(),
              (long long)linked, (long long)(int64_t(p.result.kept.size()) - linked), p.result.skipped.size(),
              (a.out / "scores.csv").string().c_str());
}

}  // namespace

void add_classify_command(CLI::App& app) {
  auto args = std::make_shared<ClassifyArgs>();
  CLI::App* cmd = app.add_subcommand(
      "classify",
      "Sort unlabelled images by the model's gender or age head into OUTDIR/<label>/ (hard links, else copies) and "
      "write OUTDIR/scores.csv with each image's class probabilities");
  add_inference_flags(cmd, args->flags, true, false);
  cmd->add_option("--task", args->task, "gender or age")->required()->check(CLI::IsMember({"gender", "age"}));
  cmd->add_option("--images", args->images, "A folder (recursively) or a list file of images")->required();
  cmd->add_option("--out", args->out, "Output folder")->required();
  cmd->add_option("--limit", args->limit, "Classify a random sample of this many images (0: all)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(0), int64_t(1) << 40));
  cmd->add_option("--seed", args->seed, "With --limit: which random sample")->capture_default_str();
  cmd->callback([args] { run_classify(*args); });
}

}  // namespace cuface::cli
