// Helpers for the data tests: the shared real data (skipped when absent) and small synthetic packs.
#pragma once
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "face/image/image.h"
#include "face/pack/pack.h"
#include "face/pack/shard_writer.h"
#include "scratch_dir.h"
#include "common/source_dir.h"

namespace cuface::testing {

namespace fs = std::filesystem;

inline std::string shared_data(const std::string& relative = "") {
  return std::string(CUFACE_SHARED_DATA) + (relative.empty() ? "" : "/" + relative);
}

#define CUFACE_REQUIRE_SHARED_DATA(sub)                                                      \
  if (!std::filesystem::exists(::cuface::testing::shared_data(sub)))                         \
  GTEST_SKIP() << "shared face data not found at " << ::cuface::testing::shared_data(sub) \
               << " (a fresh clone has no ../shared/data)"

inline void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

inline std::vector<uint8_t> file_bytes(const std::string& path) { return read_file(path); }

inline void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

// size x size RGB image whose pixels encode (record, x, y): easy to recognise after loading.
inline Image pattern_image(int record, int size) {
  Image image(size, size);
  for (int y = 0; y < size; ++y)
    for (int x = 0; x < size; ++x) {
      uint8_t* p = image.row(y) + 3 * x;
      p[0] = uint8_t(record);
      p[1] = uint8_t(x * 255 / (size - 1));
      p[2] = uint8_t(y * 255 / (size - 1));
    }
  return image;
}

inline void write_sidecar(const std::string& prefix, int64_t records, int64_t classes) {
  const nlohmann::json sidecar = {
      {"format", "cuface-pack"},
      {"version", kPackVersion},
      {"records", records},
      {"classes", classes},
      {"shards", {{{"file", fs::path(shard_path(prefix, 0, 1)).filename().string()}, {"records", records}}}}};
  write_text(sidecar_path(prefix), sidecar.dump());
}

// A one-shard pack PREFIX of `count` raw pattern images; record i has identity i % classes,
// gender i % 2, age 20 + i.
inline void write_pattern_pack(const std::string& prefix, int count, int classes, int size) {
  ShardWriter writer(shard_path(prefix, 0, 1), 0, 1);
  for (int i = 0; i < count; ++i) {
    const Image image = pattern_image(i, size);
    const RecordLabels labels{i % classes, int8_t(i % 2), int16_t(20 + i)};
    writer.add(labels, "pattern/" + std::to_string(i), Encoding::Raw, size, size, 3, image.pixels.data(),
               image.pixels.size());
  }
  writer.finish();
  write_sidecar(prefix, count, classes);
}

}  // namespace cuface::testing
