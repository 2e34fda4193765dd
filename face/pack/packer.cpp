#include "face/pack/packer.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <map>
#include <memory>
#include <thread>

#include <nlohmann/json.hpp>
#include <omp.h>

#include "engine/atomic_file.h"
#include "engine/error.h"
#include "face/image/input_crop.h"
#include "face/image/warp.h"
#include "face/pack/pack.h"
#include "face/pack/shard.h"
#include "face/pack/shard_writer.h"

namespace cuface {

namespace fs = std::filesystem;

namespace {

// One image ready to be written, or the reason it is skipped.
struct Prepared {
  bool ok = false;
  std::string error;
  Encoding encoding = Encoding::Raw;
  int width = 0, height = 0;
  std::vector<uint8_t> bytes;
};

// `detector` is this thread's own (null without --detect).
Prepared prepare(const SourceItem& item, const SourceReader& reader, const PackOptions& options,
                 const std::unordered_map<std::string, Landmarks>& landmarks, FaceDetector* detector) {
  Prepared out;
  std::vector<uint8_t> bytes;
  Image image;
  if (!reader.read(item, bytes, out.error) || !decode_image(bytes.data(), bytes.size(), image, out.error)) return out;

  const bool align = !options.landmarks.empty();
  const InputCrop crop = plan_input_crop(image, options.size, detector, options.crop, align,
                                         align ? find_landmarks(landmarks, item.path) : nullptr, options.landmarks);
  if (!crop.ok) {
    out.error = crop.why;
    return out;
  }
  const bool warp = !crop.as_is;

  out.width = out.height = options.size;
  if (!warp && options.encoding == Encoding::Jpeg && sniff_encoding(bytes.data(), bytes.size(), out.encoding)) {
    out.bytes = std::move(bytes);  // stored as it came: no second lossy encoding
  } else {
    const Image result = warp ? warp_to_size(image, crop.map, options.size) : std::move(image);
    out.encoding = options.encoding;
    out.bytes = options.encoding == Encoding::Raw ? result.pixels : encode_jpeg(result, options.quality);
  }
  out.ok = true;
  return out;
}

// Dense identity numbers: names sorted numerically when all are integers, else as strings.
std::map<std::string, int32_t> number_identities(const std::vector<std::string>& names) {
  std::vector<std::string> sorted = names;
  const bool numeric = std::all_of(sorted.begin(), sorted.end(), [](const std::string& s) {
    return !s.empty() && s.size() < 10 &&
           std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
  });
  if (numeric)
    std::sort(sorted.begin(), sorted.end(), [](const std::string& a, const std::string& b) { return std::stol(a) < std::stol(b); });
  else
    std::sort(sorted.begin(), sorted.end());
  std::map<std::string, int32_t> numbers;
  for (const std::string& name : sorted) numbers.emplace(name, int32_t(numbers.size()));
  return numbers;
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  return text;
}

// The sidecar's "detected": null, {"mode": "align"} or {"mode": "crop", "pad": P}.
nlohmann::json detection_record(const PackOptions& options) {
  if (!options.detect) return nullptr;
  if (options.crop.mode == DetectMode::Align) return {{"mode", "align"}};
  return {{"mode", "crop"}, {"pad", options.crop.pad}};
}

// The first file of an earlier pack under `prefix` (its sidecar or a PREFIX-NNNNN-of-NNNNN shard),
// empty when there is none. Writing over it would mix the two: a pack with fewer shards leaves the
// old ones beside the new sidecar.
std::string existing_pack_file(const std::string& prefix) {
  if (fs::exists(sidecar_path(prefix))) return sidecar_path(prefix);
  const fs::path folder = fs::path(prefix).parent_path().empty() ? fs::path(".") : fs::path(prefix).parent_path();
  const std::string stem = fs::path(prefix).filename().string() + "-";
  const size_t shard_name = stem.size() + fs::path(shard_path("", 0, 1)).filename().string().size() - 1;
  std::error_code error;
  for (const fs::directory_entry& entry : fs::directory_iterator(folder, error)) {
    const std::string name = entry.path().filename().string();
    if (name.size() == shard_name && name.starts_with(stem) && name.ends_with(kShardExtension))
      return entry.path().string();
  }
  return "";
}

// The shards of one pack being written. Records are streamed into draft shards as they are
// prepared, with the identity numbers of the listing; only once every image has been decoded is it
// known which classes kept enough images (--min-per-class counts packed images, not listed ones)
// and how many records there are. When that changes the numbering or leaves shards empty, the
// drafts are copied into the final shards (renumbered, dropped classes left out, no decoding);
// otherwise they are simply renamed. Drafts are removed on every path.
class DraftShards {
 public:
  DraftShards(const std::string& prefix, int shards) : prefix_(prefix), shards_(shards) {
    for (int s = 0; s < shards; ++s)
      writers_.push_back(std::make_unique<ShardWriter>(draft_path(s), uint32_t(s), uint32_t(shards)));
  }
  ~DraftShards() {
    for (int s = 0; s < shards_; ++s) std::remove(draft_path(s).c_str());
  }

  void add(const RecordLabels& labels, const std::string& source, const Prepared& p) {
    writers_[size_t(labels_.size() % writers_.size())]->add(labels, source, p.encoding, p.width, p.height, 3,
                                                            p.bytes.data(), p.bytes.size());
    labels_.push_back(labels);
  }
  // Labels of the records added so far, in order.
  const std::vector<RecordLabels>& labels() const { return labels_; }

  // Writes the final shards: record k keeps its labels with identity `renumber[identity]` (-1: left
  // out); `shards` of them. Returns the final shard files.
  std::vector<std::string> finish(const std::vector<int32_t>& renumber, int shards) {
    for (auto& writer : writers_) writer->finish();
    std::vector<std::string> files;
    bool as_drafted = shards == shards_;
    for (size_t identity = 0; identity < renumber.size(); ++identity)
      as_drafted = as_drafted && renumber[identity] == int32_t(identity);
    if (as_drafted) {
      for (int s = 0; s < shards; ++s) {
        files.push_back(shard_path(prefix_, s, shards));
        if (std::rename(draft_path(s).c_str(), files.back().c_str()) != 0)
          throw Error("cannot rename " + draft_path(s) + " to " + files.back() + ": " + std::strerror(errno));
      }
      return files;
    }
    std::vector<std::unique_ptr<Shard>> readers;
    std::vector<std::unique_ptr<ShardWriter>> writers;
    for (int s = 0; s < shards_; ++s) readers.push_back(std::make_unique<Shard>(draft_path(s)));
    for (int s = 0; s < shards; ++s) {
      files.push_back(shard_path(prefix_, s, shards));
      writers.push_back(std::make_unique<ShardWriter>(files.back(), uint32_t(s), uint32_t(shards)));
    }
    int64_t written = 0;
    for (int64_t k = 0; k < int64_t(labels_.size()); ++k) {
      RecordView r = readers[size_t(k % shards_)]->record(k / shards_);
      if (r.labels.identity >= 0) {
        r.labels.identity = renumber[size_t(r.labels.identity)];
        if (r.labels.identity < 0) continue;
      }
      writers[size_t(written++ % shards)]->add(r.labels, r.source, r.encoding, r.width, r.height, r.channels, r.data,
                                               r.size);
    }
    for (auto& writer : writers) writer->finish();
    return files;
  }

 private:
  std::string draft_path(int s) const { return shard_path(prefix_, s, shards_) + ".draft"; }
  std::string prefix_;
  int shards_;
  std::vector<std::unique_ptr<ShardWriter>> writers_;
  std::vector<RecordLabels> labels_;
};

}  // namespace

PackSummary pack_images(const PackOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  if (options.size < 16 || options.size > 1024)
    throw Error("--size " + std::to_string(options.size) + ": expected a side between 16 and 1024 (112 or 224)");
  if (options.shards < 1 || options.shards > int(kMaxShards))
    throw Error("--shards must be between 1 and " + std::to_string(kMaxShards));
  if (options.min_per_class < 1) throw Error("--min-per-class must be at least 1");
  if (options.quality < 1 || options.quality > 100) throw Error("--quality must be between 1 and 100");
  if (options.jobs < 0) throw Error("--jobs must be 0 (all cores) or a number of threads");
  if (options.out.empty()) throw Error("--out PREFIX is required");
  if (options.detect && !options.landmarks.empty()) throw Error("--detect and --align FILE exclude each other");
  if (options.detect && !(options.crop.pad >= 0 && options.crop.pad <= 2))
    throw Error("--pad must be between 0 and 2 (a fraction of the face box's side)");
  const fs::path out_folder = fs::path(options.out).parent_path();
  if (!out_folder.empty() && fs::exists(out_folder) && !fs::is_directory(out_folder))
    throw Error("--out " + options.out + ": " + out_folder.string() + " is not a folder");
  if (const std::string earlier = existing_pack_file(options.out); !earlier.empty())
    throw Error("--out " + options.out + ": " + earlier + " already exists (an earlier pack): remove it or choose another --out");

  PackSummary summary;
  SourceListing listing = list_sources(options.format, options.input, options.tree_label);
  summary.listed = int64_t(listing.items.size()) + int64_t(listing.problems.size());
  for (const ListingProblem& problem : listing.problems) {
    if (options.strict) throw Error(problem.path + ": " + problem.reason + " (--strict)");
    ++summary.skipped;
    if (options.on_skip) options.on_skip(problem.path, problem.reason);
  }
  std::unordered_map<std::string, Landmarks> landmarks;
  if (!options.landmarks.empty()) landmarks = read_landmarks(options.landmarks);
  // The detector is not thread-safe: one per worker thread (below), all sharing one landmark model.
  std::vector<std::unique_ptr<FaceDetector>> detectors;
  if (options.detect) detectors.push_back(std::make_unique<FaceDetector>(options.landmark_model));

  // Identities with too few listed images cannot reach --min-per-class: not even decoded. The rest
  // are numbered for the drafts; the final numbering counts packed images (DraftShards).
  std::map<std::string, int64_t> listed_per_class;
  for (const SourceItem& item : listing.items)
    if (!item.identity.empty()) ++listed_per_class[item.identity];
  std::vector<std::string> candidate_names;
  for (const auto& [name, count] : listed_per_class)
    if (count >= options.min_per_class) candidate_names.push_back(name);
  const std::map<std::string, int32_t> draft_identity = number_identities(candidate_names);
  std::vector<SourceItem> items;
  for (SourceItem& item : listing.items) {
    if (!item.identity.empty() && !draft_identity.count(item.identity)) {
      ++summary.dropped;
      continue;
    }
    items.push_back(std::move(item));
  }
  if (items.empty())
    throw Error("nothing to pack: " + std::to_string(summary.listed) + " image(s) found in " + options.input + " as --format " +
                options.format + (summary.dropped ? ", all dropped by --min-per-class" : "") +
                (options.format == "tree" ? " (tree expects INPUT/<label>/<image>: files directly in INPUT are not read)" : ""));

  if (!out_folder.empty()) fs::create_directories(out_folder);
  DraftShards drafts(options.out, int(std::min<int64_t>(options.shards, int64_t(items.size()))));
  const SourceReader reader(listing);
  const int jobs = options.jobs > 0 ? options.jobs : int(std::max(1u, std::thread::hardware_concurrency()));
  const int64_t chunk = int64_t(jobs) * 32;
  while (!detectors.empty() && int(detectors.size()) < jobs)
    detectors.push_back(std::make_unique<FaceDetector>(*detectors[0]));
  std::vector<Prepared> prepared;
  for (int64_t begin = 0; begin < int64_t(items.size()); begin += chunk) {
    const int64_t end = std::min<int64_t>(begin + chunk, int64_t(items.size()));
    prepared.assign(size_t(end - begin), Prepared{});
#pragma omp parallel for schedule(dynamic, 1) num_threads(jobs)
    for (int64_t i = begin; i < end; ++i) {
      try {
        FaceDetector* detector = detectors.empty() ? nullptr : detectors[size_t(omp_get_thread_num())].get();
        prepared[size_t(i - begin)] = prepare(items[size_t(i)], reader, options, landmarks, detector);
      } catch (const std::exception& e) {  // encoder failures; decoding itself never throws
        prepared[size_t(i - begin)].error = e.what();
      }
    }
    for (int64_t i = begin; i < end; ++i) {
      const SourceItem& item = items[size_t(i)];
      const Prepared& p = prepared[size_t(i - begin)];
      if (!p.ok) {
        if (options.strict) throw Error(item.path + ": " + p.error + " (--strict)");
        ++summary.skipped;
        if (options.on_skip) options.on_skip(item.path, p.error);
        continue;
      }
      RecordLabels labels;
      labels.identity = item.identity.empty() ? -1 : draft_identity.at(item.identity);
      labels.gender = item.gender;
      labels.age = item.age;
      drafts.add(labels, item.path, p);
    }
    if (options.progress) options.progress(end, int64_t(items.size()));
  }
  if (drafts.labels().empty())
    throw Error("nothing packed: every one of the " + std::to_string(items.size()) + " images of " + options.input +
                " was skipped");

  // The final classes: those with at least --min-per-class packed images, numbered in the same order.
  std::vector<int64_t> packed_per_draft(draft_identity.size(), 0);
  for (const RecordLabels& labels : drafts.labels())
    if (labels.identity >= 0) ++packed_per_draft[size_t(labels.identity)];
  std::vector<std::string> draft_names(draft_identity.size());
  for (const auto& [name, number] : draft_identity) draft_names[size_t(number)] = name;
  std::vector<int32_t> renumber(draft_identity.size(), -1);
  std::vector<std::string> by_number;
  std::vector<int64_t> images_per_class;
  for (size_t number = 0; number < draft_names.size(); ++number) {
    const int64_t packed = packed_per_draft[number];
    if (packed < options.min_per_class) {
      summary.dropped += packed;
      continue;
    }
    renumber[number] = int32_t(by_number.size());
    by_number.push_back(draft_names[number]);
    images_per_class.push_back(packed);
  }
  std::map<int, int64_t> gender_counts, age_counts;
  for (const RecordLabels& labels : drafts.labels()) {
    if (labels.identity >= 0 && renumber[size_t(labels.identity)] < 0) continue;
    ++summary.packed;
    ++gender_counts[labels.gender];
    ++age_counts[labels.age];
  }
  summary.classes = int64_t(by_number.size());
  if (summary.packed == 0)
    throw Error("nothing packed: none of the classes of " + options.input + " has " +
                std::to_string(options.min_per_class) + " packed images (--min-per-class); " +
                std::to_string(summary.skipped) + " images were skipped");

  summary.shard_files = drafts.finish(renumber, int(std::min<int64_t>(options.shards, summary.packed)));
  nlohmann::json shards = nlohmann::json::array();
  for (const std::string& file : summary.shard_files)
    shards.push_back({{"file", fs::path(file).filename().string()}, {"records", Shard(file).size()}});

  nlohmann::json genders = nlohmann::json::object(), ages = nlohmann::json::object();
  for (const auto& [gender, count] : gender_counts)
    genders[gender == 0 ? "male" : gender == 1 ? "female" : "unknown"] = count;
  for (const auto& [age, count] : age_counts) ages[age < 0 ? "unknown" : std::to_string(age)] = count;
  const nlohmann::json sidecar = {
      {"format", "cuface-pack"},
      {"version", kPackVersion},
      {"records", summary.packed},
      {"classes", summary.classes},
      {"identity_names", by_number},
      {"images_per_class", images_per_class},
      {"gender_counts", genders},
      {"age_counts", ages},
      {"image_size", options.size},
      {"encoding", encoding_name(options.encoding)},
      {"aligned", !options.landmarks.empty() || (options.detect && options.crop.mode == DetectMode::Align)},
      {"detected", detection_record(options)},
      {"input", options.input},
      {"input_format", options.format},
      {"listed", summary.listed},
      {"skipped", summary.skipped},
      {"dropped_below_min_per_class", summary.dropped},
      {"min_per_class", options.min_per_class},
      {"command", options.command},
      {"created", utc_now()},
      {"shards", shards},
  };
  summary.sidecar = sidecar_path(options.out);
  write_file_atomically(summary.sidecar, sidecar.dump(1) + "\n");
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return summary;
}

}  // namespace cuface
