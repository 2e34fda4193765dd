#include "face/eval/embedder.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstring>
#include <exception>
#include <fstream>
#include <future>
#include <mutex>
#include <thread>

#include "engine/error.h"
#include "face/image/input_crop.h"
#include "face/image/warp.h"
#include "face/loader/upload.h"
#include "face/pack/sources.h"
#include "kernels/elementwise.h"

namespace cuface::eval {

namespace fs = std::filesystem;

namespace {

bool is_image_file(const fs::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  for (const char* known : {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".pgm", ".ppm"})
    if (ext == known) return true;
  return false;
}

// Mirrors each row of u8 NHWC crops (host tensors).
Tensor mirrored(const Tensor& crops) {
  Tensor out = Tensor::empty(crops.shape(), DType::U8, Device::CPU);
  const int64_t rows = crops.size(0) * crops.size(1), width = crops.size(2), channels = crops.size(3);
  const uint8_t* src = crops.data<uint8_t>();
  uint8_t* dst = out.data<uint8_t>();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t x = 0; x < width; ++x)
      std::memcpy(dst + (r * width + x) * channels, src + (r * width + width - 1 - x) * channels, size_t(channels));
  return out;
}

// One batch's crops, prepared on worker threads.
struct PreparedBatch {
  std::vector<std::optional<Image>> crops;
  std::vector<std::string> why;
};

}  // namespace

std::vector<fs::path> list_images(const fs::path& folder_or_list) {
  std::vector<fs::path> files;
  if (fs::is_directory(folder_or_list)) {
    for (const fs::directory_entry& e :
         fs::recursive_directory_iterator(folder_or_list, fs::directory_options::follow_directory_symlink))
      if (e.is_regular_file() && is_image_file(e.path())) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    CUFACE_CHECK(!files.empty(), "--images: no image files (.jpg, .png, ...) under '" + folder_or_list.string() + "'");
    return files;
  }
  std::ifstream in(folder_or_list);
  CUFACE_CHECK(in.good(), "--images: '" + folder_or_list.string() + "' is neither a folder nor a readable list file");
  const fs::path base = folder_or_list.parent_path();
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const size_t begin = line.find_first_not_of(" \t");
    if (begin == std::string::npos || line[begin] == '#') continue;
    // A tab ends the path (paths may hold spaces then); otherwise the first whitespace does.
    const size_t end = line.find(line.find('\t') != std::string::npos ? "\t" : " ", begin);
    const fs::path path = line.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
    files.push_back(path.is_absolute() ? path : base / path);
    CUFACE_CHECK(fs::is_regular_file(files.back()), folder_or_list.string() + ":" + std::to_string(number) +
                                                        ": image '" + files.back().string() + "' does not exist");
  }
  CUFACE_CHECK(!files.empty(), "--images: the list file '" + folder_or_list.string() + "' names no image");
  return files;
}

ImageSource file_source(std::span<const fs::path> files) {
  std::vector<fs::path> copy(files.begin(), files.end());
  auto shared = std::make_shared<const std::vector<fs::path>>(std::move(copy));
  return {shared->size(), [shared](size_t i) { return read_file((*shared)[i].string()); },
          [shared](size_t i) { return (*shared)[i].generic_string(); }};
}

Output parse_features(const std::string& name) {
  if (name == "embedding") return Output::Embedding;
  if (name == "pooled") return Output::Pooled;
  throw Error("--features: expected embedding or pooled, got '" + name + "'");
}

Embedder::Embedder(InferenceModel& model, Context& ctx, FaceInputOptions input, EmbedOptions options)
    : model_(model), ctx_(ctx), input_(std::move(input)), options_(options) {
  CUFACE_CHECK(input_.size >= 32 && input_.size % 16 == 0,
               "--input-size must be a multiple of 16 and at least 32, got " + std::to_string(input_.size));
  CUFACE_CHECK(options_.batch >= 1, "--batch must be at least 1");
  CUFACE_CHECK(!(input_.detect && !input_.landmarks.empty()), "--detect and --align FILE exclude each other");
  CUFACE_CHECK(!options_.flip_test || options_.output == Output::Embedding || options_.output == Output::Pooled,
               "--flip-test applies to embeddings and pooled features, not to class scores");
  FaceModel& m = *model_.model;
  switch (options_.output) {
    case Output::Embedding:
      CUFACE_CHECK(!model_.backbone_only, "'" + model_.file.string() +
                                              "' is a backbone without an embedding layer: use --features pooled");
      // The embedding layer learns only from the FR loss (--init loads backbones alone): a model
      // without an FR head comes from a Gender or Age run, and its embedding is still random.
      CUFACE_CHECK(m.has_head(Task::FR),
                   "'" + model_.file.string() + "' has no FR head (fr.weight): it comes from a Gender or Age run, "
                   "so its embedding layer was never trained and its embeddings mean nothing. Use a model trained "
                   "with FR or multi (embed also offers --features pooled, the backbone's features)");
      break;
    case Output::Pooled: break;
    case Output::Gender:
    case Output::Age: {
      const Task task = options_.output == Output::Gender ? Task::Gender : Task::Age;
      CUFACE_CHECK(m.has_head(task), "'" + model_.file.string() + "' has no " + task_name(task) + " head");
      break;
    }
  }
  if (!input_.landmarks.empty()) landmarks_ = read_landmarks(input_.landmarks);
  if (input_.detect) detector_.emplace(input_.landmark_model);
}

Embedder::~Embedder() = default;

std::optional<Image> Embedder::prepare(const std::vector<uint8_t>& bytes, const std::string& name,
                                       FaceDetector* detector, std::string& why) const {
  Image image;
  if (!decode_image(bytes.data(), bytes.size(), image, why)) return std::nullopt;
  const bool align = !input_.landmarks.empty();
  const InputCrop crop = plan_input_crop(image, input_.size, detector, input_.crop, align,
                                         align ? find_landmarks(landmarks_, name) : nullptr, input_.landmarks);
  if (!crop.ok) {
    why = crop.why;
    return std::nullopt;
  }
  if (crop.as_is) return image;
  return warp_to_size(image, crop.map, input_.size);
}

Tensor Embedder::forward_once(const Tensor& crops) {
  const int64_t n = crops.size(0);
  Batch batch;
  batch.images = crops;
  for (Tensor* labels : {&batch.identity, &batch.gender, &batch.age}) {
    *labels = Tensor::empty({n}, DType::I32, Device::CPU);
    std::fill_n(labels->data<int32_t>(), n, -1);
  }
  // The trainer's input: the same normalisation, in bf16 where it trains in bf16.
  NormaliseOptions normalise;
  normalise.dtype = ctx_.is_cuda() && ctx_.precision() == Precision::BF16 ? DType::BF16 : DType::F32;
  const Tensor x = to_device_normalised(ctx_, batch, normalise).images;
  FaceModel& m = *model_.model;
  switch (options_.output) {
    case Output::Embedding: return m.embed(ctx_, x);
    case Output::Pooled: return m.pooled_features(ctx_, x);
    case Output::Gender: return m.classify(ctx_, Task::Gender, x);
    case Output::Age: return m.classify(ctx_, Task::Age, x);
  }
  throw Error("unknown output");
}

Tensor Embedder::forward(const Tensor& crops) {
  CUFACE_CHECK(crops.rank() == 4 && crops.dtype() == DType::U8 && !crops.is_cuda(),
               "Embedder::forward: expected host u8 crops [n, size, size, 3], got " + crops.str());
  Tensor y = forward_once(crops);  // f32 whatever precision the device computed in (face_model.h)
  if (options_.flip_test) add(ctx_, y, forward_once(mirrored(crops)), y);
  return y.to(Device::CPU);
}

EmbedResult Embedder::run(const ImageSource& source, const std::function<void(int64_t, int64_t)>& progress) {
  const size_t total = source.count;
  const int workers = std::max(1, options_.workers);
  std::vector<FaceDetector> detectors;
  if (detector_)
    for (int w = 0; w < workers; ++w) detectors.push_back(*detector_);

  auto prepare_range = [&](size_t begin, size_t end) {
    PreparedBatch out;
    out.crops.resize(end - begin);
    out.why.resize(end - begin);
    std::atomic<size_t> next{begin};
    std::exception_ptr failure;
    std::mutex failure_mutex;
    auto work = [&](int w) {
      for (size_t i; (i = next++) < end;) {
        try {
          std::vector<uint8_t> bytes;
          try {
            bytes = source.bytes(i);
          } catch (const Error& e) {  // unreadable: skipped like an undecodable image
            out.why[i - begin] = e.what();
            continue;
          }
          out.crops[i - begin] = prepare(bytes, source.name(i), detectors.empty() ? nullptr : &detectors[size_t(w)],
                                         out.why[i - begin]);
        } catch (...) {
          std::lock_guard<std::mutex> lock(failure_mutex);
          if (!failure) failure = std::current_exception();
          next = end;
        }
      }
    };
    std::vector<std::thread> threads;
    for (int w = 1; w < workers; ++w) threads.emplace_back(work, w);
    work(0);
    for (std::thread& t : threads) t.join();
    if (failure) std::rethrow_exception(failure);
    return out;
  };

  EmbedResult result;
  std::vector<float> rows;
  int64_t dim = -1;
  const size_t batch = size_t(options_.batch);
  const size_t S = size_t(input_.size), crop_bytes = S * S * 3;
  std::future<PreparedBatch> pending;
  if (total > 0) pending = std::async(std::launch::async, prepare_range, 0, std::min(batch, total));
  for (size_t begin = 0; begin < total; begin += batch) {
    const size_t end = std::min(begin + batch, total);
    PreparedBatch prepared = pending.get();
    // Decode the next batch while the model runs this one.
    if (end < total) pending = std::async(std::launch::async, prepare_range, end, std::min(end + batch, total));

    std::vector<size_t> present;
    for (size_t i = begin; i < end; ++i) {
      if (prepared.crops[i - begin])
        present.push_back(i);
      else
        result.skipped.emplace_back(i, prepared.why[i - begin]);
    }
    if (!present.empty()) {
      const Shape shape{int64_t(present.size()), int64_t(S), int64_t(S), 3};
      Tensor crops = ctx_.is_cuda() ? Tensor::empty_pinned(shape, DType::U8) : Tensor::empty(shape, DType::U8);
      for (size_t k = 0; k < present.size(); ++k)
        std::memcpy(crops.data<uint8_t>() + k * crop_bytes, prepared.crops[present[k] - begin]->pixels.data(), crop_bytes);
      const Tensor y = forward(crops);
      dim = y.size(1);
      rows.insert(rows.end(), y.data<float>(), y.data<float>() + y.numel());
      result.kept.insert(result.kept.end(), present.begin(), present.end());
    }
    if (progress) progress(int64_t(end), int64_t(total));
  }
  result.rows = Tensor::empty({int64_t(result.kept.size()), std::max<int64_t>(dim, 0)});
  if (!rows.empty()) std::memcpy(result.rows.data<float>(), rows.data(), rows.size() * sizeof(float));
  return result;
}

std::function<Tensor(const std::vector<fs::path>&)> image_embedder(Embedder& embedder,
                                                                  std::vector<std::pair<size_t, std::string>>* skipped,
                                                                  const std::function<void(int64_t, int64_t)>& progress) {
  return [&embedder, skipped, progress](const std::vector<fs::path>& images) {
    const EmbedResult r = embedder.run(file_source(images), progress);
    CUFACE_CHECK(!r.kept.empty(), "none of the " + std::to_string(images.size()) + " images could be embedded (" +
                                      (r.skipped.empty() ? std::string("none given") : r.skipped[0].second) + ")");
    const int64_t dim = r.rows.size(1);
    Tensor out = Tensor::zeros({int64_t(images.size()), dim});
    for (size_t k = 0; k < r.kept.size(); ++k)
      std::memcpy(out.data<float>() + int64_t(r.kept[k]) * dim, r.rows.data<float>() + int64_t(k) * dim,
                  size_t(dim) * sizeof(float));
    if (skipped)
      skipped->insert(skipped->end(), r.skipped.begin(), r.skipped.end());
    return out;
  };
}

}  // namespace cuface::eval
