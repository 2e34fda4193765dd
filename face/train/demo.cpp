#include "face/train/demo.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "engine/error.h"
#include "engine/philox.h"
#include "face/image/image.h"
#include "face/pack/packer.h"

namespace cuface {

namespace fs = std::filesystem;

namespace {

struct Split {
  std::vector<std::pair<std::string, std::vector<std::string>>> train, held_out;  // person -> image paths
};

// 85% of the people train, the rest are held out; the order of people is a seeded shuffle.
Split split_people(std::vector<std::pair<std::string, std::vector<std::string>>> people, int64_t max_people,
                   uint64_t seed) {
  std::vector<int64_t> order = philox_permutation(int64_t(people.size()), seed, 0);
  if (max_people > 0 && int64_t(order.size()) > max_people) order.resize(size_t(max_people));
  Split split;
  const size_t train_count = size_t(std::llround(0.85 * double(order.size())));
  for (size_t i = 0; i < order.size(); ++i)
    (i < train_count ? split.train : split.held_out).push_back(std::move(people[size_t(order[i])]));
  return split;
}

std::vector<std::pair<std::string, std::vector<std::string>>> lfw_people(const fs::path& images, size_t min_images) {
  std::vector<std::pair<std::string, std::vector<std::string>>> people;
  for (const auto& entry : fs::directory_iterator(images)) {
    if (!entry.is_directory()) continue;
    std::vector<std::string> files;
    for (const auto& file : fs::directory_iterator(entry.path())) files.push_back(fs::absolute(file.path()).string());
    if (files.size() < min_images) continue;
    std::sort(files.begin(), files.end());
    people.emplace_back(entry.path().filename().string(), std::move(files));
  }
  std::sort(people.begin(), people.end());  // directory order is not portable
  return people;
}

}  // namespace

std::vector<std::pair<std::string, std::vector<std::string>>> write_synthetic_faces(const std::string& root_name,
                                                                                    int people, int per_person,
                                                                                    int size, uint64_t seed) {
  const fs::path root = root_name;
  struct Blob {
    float x, y, radius, colour[3];
  };
  std::vector<std::pair<std::string, std::vector<std::string>>> out;
  for (int p = 0; p < people; ++p) {
    Philox identity_rng(seed, uint64_t(p));
    std::vector<Blob> blobs(6);
    for (Blob& b : blobs) {
      b.x = 0.2f + 0.6f * identity_rng.next_float();
      b.y = 0.2f + 0.6f * identity_rng.next_float();
      b.radius = 0.08f + 0.12f * identity_rng.next_float();
      for (float& c : b.colour) c = 255.0f * identity_rng.next_float();
    }
    const std::string name = "person" + std::to_string(p);
    fs::create_directories(root / name);
    std::vector<std::string> files;
    for (int k = 0; k < per_person; ++k) {
      Philox rng(seed + 1, uint64_t(p) * 1000 + uint64_t(k));
      const float dx = 0.08f * (rng.next_float() - 0.5f), dy = 0.08f * (rng.next_float() - 0.5f);
      const float zoom = 0.9f + 0.2f * rng.next_float(), light = 0.75f + 0.5f * rng.next_float();
      Image image(size, size, 3);
      for (int y = 0; y < size; ++y)
        for (int x = 0; x < size; ++x) {
          const float u = (float(x) / float(size) - 0.5f) / zoom + 0.5f + dx;
          const float v = (float(y) / float(size) - 0.5f) / zoom + 0.5f + dy;
          float rgb[3] = {110, 110, 110};
          for (const Blob& b : blobs) {
            const float d2 = ((u - b.x) * (u - b.x) + (v - b.y) * (v - b.y)) / (b.radius * b.radius);
            const float w = std::exp(-d2);
            for (int c = 0; c < 3; ++c) rgb[c] = rgb[c] * (1 - w) + b.colour[c] * w;
          }
          for (int c = 0; c < 3; ++c) {
            const float value = rgb[c] * light + 12.0f * rng.next_normal();
            image.row(y)[x * 3 + c] = uint8_t(std::clamp(value, 0.0f, 255.0f));
          }
        }
      const fs::path file = root / name / (std::to_string(k) + ".png");
      std::vector<uint8_t> png = encode_png(image);
      std::ofstream(file, std::ios::binary).write(reinterpret_cast<const char*>(png.data()), std::streamsize(png.size()));
      files.push_back(file.string());
    }
    out.emplace_back(name, std::move(files));
  }
  return out;
}

namespace {

// Writes a list file ("path identity" per line) for `people` and packs it; returns the image count.
int64_t pack_people(const std::vector<std::pair<std::string, std::vector<std::string>>>& people,
                    const fs::path& prefix, const std::string& landmarks, int size, int jobs) {
  const fs::path list = prefix.string() + ".list";
  {
    std::ofstream out(list);
    for (size_t i = 0; i < people.size(); ++i)
      for (const std::string& file : people[i].second) out << file << " " << i << "\n";
  }
  PackOptions options;
  options.input = list.string();
  options.format = "list";
  options.out = prefix.string();
  options.landmarks = landmarks;
  options.size = size;
  options.encoding = Encoding::Raw;
  options.jobs = jobs;
  options.strict = true;
  options.command = "cuface demo";
  return pack_images(options).packed;
}

// Mean of column `loss` over the first or last `count` rows of loss_debug.csv.
double mean_loss(const fs::path& csv, size_t count, bool last) {
  std::ifstream in(csv);
  std::string line;
  std::getline(in, line);  // header
  std::vector<double> losses;
  while (std::getline(in, line)) {
    std::stringstream row(line);
    std::string cell;
    for (int column = 0; column < 4 && std::getline(row, cell, ','); ++column) {}
    losses.push_back(std::stod(cell));
  }
  CUFACE_CHECK(!losses.empty(), "no losses in '" + csv.string() + "'");
  count = std::min(count, losses.size());
  double sum = 0;
  for (size_t i = 0; i < count; ++i) sum += losses[last ? losses.size() - 1 - i : i];
  return sum / double(count);
}

// The figures of the validation at `step` from valid.csv.
std::map<std::string, double> validation_at(const fs::path& csv, int64_t step) {
  std::ifstream in(csv);
  std::string line;
  std::getline(in, line);
  std::map<std::string, double> figures;
  while (std::getline(in, line)) {
    std::stringstream row(line);
    std::string at, task, figure, value;
    std::getline(row, at, ',');
    std::getline(row, task, ',');
    std::getline(row, figure, ',');
    std::getline(row, value, ',');
    if (std::stoll(at) == step) figures[figure] = std::stod(value);
  }
  return figures;
}

// Removes an earlier demo's work folder. Anything else in it (a mistyped --out, a home folder) is
// refused untouched: the demo deletes only what it wrote, its packs, list files, run and faces.
void clear_earlier_demo(const fs::path& out) {
  if (!fs::exists(out)) return;
  CUFACE_CHECK(fs::is_directory(out), "--out " + out.string() + " is a file, not a folder");
  for (const fs::directory_entry& entry : fs::directory_iterator(out)) {
    const std::string name = entry.path().filename().string();
    const bool ours = name == "run" || name == "synthetic" || name.starts_with("train.") ||
                      name.starts_with("train-") || name.starts_with("held_out.") || name.starts_with("held_out-");
    CUFACE_CHECK(ours, "--out " + out.string() + " holds '" + name +
                           "', which no demo wrote: the demo replaces its folder, so give it a new or earlier demo one");
  }
  fs::remove_all(out);
}

}  // namespace

DemoResult run_demo(const DemoOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  DemoResult result;
  const fs::path out = fs::absolute(options.out);
  clear_earlier_demo(out);
  fs::create_directories(out);

  const fs::path lfw = fs::path(options.data) / "lfw";
  const bool use_lfw = !options.synthetic && fs::exists(lfw / "images") && fs::exists(lfw / "landmarks5.txt");
  Split split;
  std::string landmarks;
  if (use_lfw) {
    result.dataset = "LFW (aligned)";
    split = split_people(lfw_people(lfw / "images", 4), options.max_identities, options.seed);
    landmarks = (lfw / "landmarks5.txt").string();
  } else {
    result.dataset = "synthetic";
    const int people = options.max_identities > 0 ? int(options.max_identities) : 200;
    split = split_people(write_synthetic_faces((out / "synthetic").string(), people, 8, options.input_size, options.seed), 0,
                         options.seed);
  }
  if (!options.quiet)
    std::printf("demo: %s, %zu people to train on, %zu held out; packing\n", result.dataset.c_str(),
                split.train.size(), split.held_out.size());
  result.train_people = int64_t(split.train.size());
  result.held_out_people = int64_t(split.held_out.size());
  result.train_images = pack_people(split.train, out / "train", landmarks, options.input_size, options.workers);
  result.held_out_images = pack_people(split.held_out, out / "held_out", landmarks, options.input_size, options.workers);

  TrainConfig config;
  config.task = "FR";
  config.train_sets = {(out / "train").string()};
  config.valid_sets = {(out / "held_out").string()};
  config.out = (out / "run").string();
  config.arch = "tiny";
  config.input_size = options.input_size;
  config.batch = options.batch;
  config.steps = options.steps;
  config.margin = options.margin;
  config.margin_s = options.margin_s;
  config.margin_m = options.margin_m;
  config.margin_m_set = true;
  config.lr = 0.1;
  config.warmup = options.steps / 10;
  config.lr_schedule = "cosine";
  config.min_lr = 1e-3;
  config.device = options.device;
  config.precision = options.precision;
  config.workers = options.workers;
  config.seed = options.seed;
  config.log_every = options.quiet ? options.steps : std::max<int64_t>(1, options.steps / 20);
  config.valid_every = 0;
  config.valid_at_start = true;
  config.valid_pairs = options.valid_pairs;
  config.checkpoint_every = 0;
  train(config, false);

  const fs::path run = config.out;
  result.first_loss = mean_loss(run / "loss_debug.csv", 10, false);
  result.final_loss = mean_loss(run / "loss_debug.csv", 10, true);
  result.accuracy_before = validation_at(run / "valid.csv", 0)["best_accuracy"];
  std::map<std::string, double> after = validation_at(run / "valid.csv", options.steps);
  result.accuracy = after["best_accuracy"];
  result.kfold_mean = after["accuracy_mean"];
  result.kfold_std = after["accuracy_std"];
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace cuface
