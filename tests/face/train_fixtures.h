// Small training runs for the trainer tests: synthetic faces packed at 32 x 32 (a few milliseconds
// per tiny step) and a tiny-ResNet configuration that trains on them.
#pragma once
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "face/pack/packer.h"
#include "face/train/config.h"
#include "face/train/demo.h"
#include "cuface_program.h"

namespace cuface::testing {

// The rows of a CSV file after its header, split into cells.
inline std::vector<std::vector<std::string>> csv_rows(const std::filesystem::path& csv) {
  std::ifstream in(csv);
  std::string line;
  std::getline(in, line);
  std::vector<std::vector<std::string>> rows;
  while (std::getline(in, line)) {
    std::stringstream row(line);
    std::vector<std::string> cells;
    std::string cell;
    while (std::getline(row, cell, ',')) cells.push_back(cell);
    if (!line.empty() && line.back() == ',') cells.emplace_back();
    rows.push_back(cells);
  }
  return rows;
}

inline std::string pack_folder(const std::string& input, const std::string& format, const std::string& out) {
  PackOptions options;
  options.input = input;
  options.format = format;
  options.out = out;
  options.size = 32;
  options.encoding = Encoding::Raw;
  options.jobs = 2;
  pack_images(options);
  return out;
}

// 12 synthetic people x 6 images at 32 x 32, identity labels only.
inline std::string synthetic_pack(const ScratchDir& dir) {
  write_synthetic_faces((dir / "faces").string(), 12, 6, 32, 7);
  return pack_folder((dir / "faces").string(), "tree", (dir / "faces_pack").string());
}

// The same people with gender (person % 2) and age (5 + 9 * person: every default age bin) labels.
inline std::string labelled_pack(const ScratchDir& dir) {
  const auto people = write_synthetic_faces((dir / "labelled").string(), 12, 6, 32, 7);
  std::ofstream list(dir / "labelled.list");
  for (size_t person = 0; person < people.size(); ++person)
    for (const std::string& image : people[person].second)
      list << image << " " << person << " " << person % 2 << " " << 5 + 9 * person << "\n";
  list.close();
  return pack_folder((dir / "labelled.list").string(), "list", (dir / "labelled_pack").string());
}

// `cuface train FR` on `pack` into `out` with tiny_config's network and settings, as arguments;
// append more (--steps N ...).
inline std::vector<std::string> tiny_train_args(const std::string& pack, const std::filesystem::path& out) {
  return {"train", "FR", "--train-sets", pack, "--out", out.string(), "--arch", "tiny", "--input-size", "32",
          "--batch", "8", "--device", "cpu", "--workers", "1", "--margin", "cosface", "--margin-s", "16",
          "--margin-m", "0.1"};
}

// Arguments as one command line for cuface(dir, line).
inline std::string command_line(const std::vector<std::string>& args) {
  std::string line;
  for (const std::string& a : args) line += (line.empty() ? "" : " ") + a;
  return line;
}

inline TrainConfig tiny_config(const std::string& pack, const std::filesystem::path& out, int64_t steps) {
  TrainConfig config;
  config.task = "FR";
  config.train_sets = {pack};
  config.out = out.string();
  config.arch = "tiny";
  config.input_size = 32;
  config.batch = 8;
  config.steps = steps;
  config.device = "cpu";
  config.workers = 2;
  config.log_every = 100;
  config.valid_every = 0;
  config.checkpoint_every = 3;
  config.margin = "cosface";
  config.margin_s = 16;
  config.margin_m = 0.1f;
  config.margin_m_set = true;
  return config;
}

}  // namespace cuface::testing
