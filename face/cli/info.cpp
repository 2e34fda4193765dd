// `cuface info`: what this build and machine offer (backend, GPUs, library versions); with a PACK,
// that pack's counts, classes and label histograms.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>

#include "engine/allocator.h"
#include "engine/error.h"
#include "face/cli/commands.h"
#include "face/image/detect.h"
#include "face/pack/pack.h"

#if CUFACE_HAS_CUDA
#include <cudnn.h>

#include "engine/cuda_check.h"
#endif

namespace cuface::cli {

static void print_build_info() {
  std::printf("cuface %s\n", CUFACE_VERSION);
  std::printf("CPU backend: yes (%d OpenMP threads)\n", omp_get_max_threads());
#if CUFACE_HAS_CUDA
  int runtime = 0, driver = 0;
  cudaRuntimeGetVersion(&runtime);
  cudaDriverGetVersion(&driver);
  std::printf("CUDA backend: yes (runtime %d.%d, driver %s, cuDNN %zu, cuBLAS %d)\n", runtime / 1000,
              (runtime % 1000) / 10,
              driver ? (std::to_string(driver / 1000) + "." + std::to_string((driver % 1000) / 10)).c_str() : "none",
              cudnnGetVersion(), CUBLAS_VER_MAJOR * 10000 + CUBLAS_VER_MINOR * 100 + CUBLAS_VER_PATCH);
  const int gpus = cuda_device_count();
  if (gpus == 0) std::printf("GPU: no GPU\n");
  for (int i = 0; i < gpus; ++i) {
    cudaDeviceProp prop{};
    CUDA_CHECK(cudaGetDeviceProperties(&prop, i));
    std::printf("GPU %d: %s, %.1f GiB, compute capability %d.%d, %d SMs\n", i, prop.name,
                double(prop.totalGlobalMem) / (1 << 30), prop.major, prop.minor, prop.multiProcessorCount);
  }
#else
  std::printf("CUDA backend: not built (configure with -DCUFACE_CUDA=ON on a machine with the CUDA toolkit)\n");
  std::printf("GPU: no GPU\n");
#endif
  if (face_detection_available())
    std::printf("face detection (--detect): dlib, landmark model %s%s\n", kDefaultLandmarkModel,
                std::filesystem::exists(kDefaultLandmarkModel) ? "" : " MISSING (install libdlib-data)");
  else
    std::printf("face detection (--detect): not built (install libdlib-dev libdlib-data and reconfigure)\n");
  std::printf("nlohmann_json %d.%d.%d, CLI11 %s\n", NLOHMANN_JSON_VERSION_MAJOR, NLOHMANN_JSON_VERSION_MINOR,
              NLOHMANN_JSON_VERSION_PATCH, CLI11_VERSION);
}

// Label counts of a pack: from its sidecar's histograms, else (a lone shard, or a sidecar without
// them) by reading every record. Only identities that have records are counted, so a damaged label
// cannot make this allocate beyond the record count.
struct LabelCounts {
  std::vector<int64_t> per_class;
  std::map<std::string, int64_t> gender, age;  // "unknown", "male", "female"; age value -> count
};

static std::optional<LabelCounts> sidecar_counts(const nlohmann::json& meta, int64_t classes) {
  try {
    LabelCounts counts;
    counts.per_class = meta.at("images_per_class").get<std::vector<int64_t>>();
    counts.gender = meta.at("gender_counts").get<std::map<std::string, int64_t>>();
    counts.age = meta.at("age_counts").get<std::map<std::string, int64_t>>();
    for (const auto& [label, n] : counts.age)
      if (label != "unknown" &&
          (label.empty() || label.size() > 5 || label.find_first_not_of("0123456789") != std::string::npos))
        return std::nullopt;
    if (int64_t(counts.per_class.size()) != classes) return std::nullopt;
    return counts;
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;
  }
}

static LabelCounts count_labels(const Pack& pack) {
  if (auto counts = sidecar_counts(pack.metadata(), pack.classes())) return *counts;
  LabelCounts counts;
  std::map<int32_t, int64_t> per_identity;
  for (int64_t i = 0; i < pack.size(); ++i) {
    const RecordLabels labels = pack.record(i).labels;
    if (labels.identity >= 0) ++per_identity[labels.identity];
    ++counts.gender[labels.gender == 0 ? "male" : labels.gender == 1 ? "female" : "unknown"];
    ++counts.age[labels.age < 0 ? "unknown" : std::to_string(labels.age)];
  }
  for (const auto& [identity, n] : per_identity) counts.per_class.push_back(n);
  return counts;
}

static void print_pack_info(const std::string& name) {
  const Pack pack(name);
  const nlohmann::json& meta = pack.metadata();
  std::printf("pack %s: %lld records in %zu shard(s), %lld identity classes\n", name.c_str(), (long long)pack.size(),
              pack.shards().size(), (long long)pack.classes());
  if (!meta.empty()) {
    const bool detected = meta.contains("detected") && meta.at("detected").is_object();
    const char* crop = meta.value("aligned", false) ? (detected ? ", faces detected and aligned to the ArcFace template"
                                                                : ", aligned to the ArcFace template")
                       : detected                   ? ", detected face boxes cropped"
                                                    : ", centre-cropped";
    std::printf("images: %dx%d %s%s; from %s (%s); %lld skipped, %lld dropped by --min-per-class %d\n",
                meta.value("image_size", 0), meta.value("image_size", 0), meta.value("encoding", "?").c_str(), crop,
                meta.value("input", "?").c_str(), meta.value("input_format", "?").c_str(),
                (long long)meta.value("skipped", 0), (long long)meta.value("dropped_below_min_per_class", 0),
                meta.value("min_per_class", 1));
    std::printf("created %s by: %s\n", meta.value("created", "?").c_str(), meta.value("command", "?").c_str());
  }
  LabelCounts counts = count_labels(pack);
  if (!counts.per_class.empty()) {
    std::vector<int64_t> sorted = counts.per_class;
    std::sort(sorted.begin(), sorted.end());
    int64_t total = 0;
    for (int64_t c : sorted) total += c;
    std::printf("images per identity: min %lld, median %lld, mean %.1f, max %lld\n", (long long)sorted.front(),
                (long long)sorted[sorted.size() / 2], double(total) / double(sorted.size()), (long long)sorted.back());
    // Histogram of class sizes in powers of two.
    std::map<int64_t, int64_t> buckets;
    for (int64_t c : sorted) {
      int64_t bucket = 1;
      while (bucket * 2 <= c) bucket *= 2;
      ++buckets[c == 0 ? 0 : bucket];
    }
    for (const auto& [bucket, n] : buckets)
      std::printf("  %6lld-%-6lld images: %lld identities\n", (long long)bucket,
                  (long long)(bucket ? bucket * 2 - 1 : 0), (long long)n);
  }
  std::printf("gender:");
  for (const auto& [label, n] : counts.gender) std::printf(" %s %lld", label.c_str(), (long long)n);
  std::printf("\nage:");
  std::map<int, int64_t> decades;
  int64_t unknown_age = 0;
  for (const auto& [label, n] : counts.age) {
    if (label == "unknown") unknown_age += n;
    else decades[std::stoi(label) / 10 * 10] += n;
  }
  for (const auto& [decade, n] : decades) std::printf(" %d-%d: %lld", decade, decade + 9, (long long)n);
  std::printf(" unknown: %lld\n", (long long)unknown_age);
}

void add_info_command(CLI::App& app) {
  auto pack = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand(
      "info", "Show the build, the backends and GPUs found, and library versions; or a PACK's counts and labels");
  cmd->add_option("PACK", *pack, "A pack PREFIX (or its .json, or one .cfpk shard) to describe");
  cmd->callback([pack] {
    if (pack->empty()) return print_build_info();
    try {
      print_pack_info(*pack);
    } catch (const nlohmann::json::exception& e) {  // a sidecar field of the wrong type
      throw Error(*pack + ": malformed pack sidecar (" + e.what() + ")");
    }
  });
}

}  // namespace cuface::cli
