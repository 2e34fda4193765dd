// Images in, one row per image out: embeddings, pooled features or class scores of a loaded model.
//
// Each image is decoded and made into a size x size crop exactly as `cuface pack` makes training
// records: aligned from a landmark file (--align, the format pack reads), or detected and aligned
// (--detect, dlib), or else used as is when already size x size and otherwise centre-cropped to a
// square and resized. The crops are normalised by the training path itself (loader/upload.h:
// to_device_normalised with the trainer's NormaliseOptions), so the network sees the same numbers it
// was trained on. Decoding runs on `workers` threads and prepares the next batch while the model runs
// the current one.
//
// --flip-test (InsightFace's convention): a row is the SUM of the outputs for the image and its
// horizontal mirror. The sum, not the mean, is what InsightFace writes; verification normalises
// rows anyway, so the two differ only in scale.
#pragma once
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/context.h"
#include "face/eval/inference_model.h"
#include "face/image/detect.h"

namespace cuface::eval {

// Every image under `folder` (recursively; by extension .jpg .jpeg .png .bmp .gif .pgm .ppm, any case),
// sorted by path; or the paths in a list file (one per line, blank lines and '#' comments skipped,
// relative paths under the list's folder; a further field after whitespace or a tab, e.g. a label,
// is ignored). Errors name the folder or the file and line.
std::vector<std::filesystem::path> list_images(const std::filesystem::path& folder_or_list);

struct FaceInputOptions {
  int size = 112;
  std::string landmarks;                   // --align FILE (LFW landmarks5.txt format)
  bool detect = false;                     // --detect: dlib's largest face
  FaceCropOptions crop;                    // with --detect: align or padded crop
  std::string landmark_model = kDefaultLandmarkModel;
};

// An image's bytes and the name it is reported and looked up (in the landmark file) by.
struct ImageSource {
  size_t count = 0;
  std::function<std::vector<uint8_t>(size_t)> bytes;
  std::function<std::string(size_t)> name;
};
ImageSource file_source(std::span<const std::filesystem::path> files);

enum class Output { Embedding, Pooled, Gender, Age };
Output parse_features(const std::string& name);  // "embedding" | "pooled"

struct EmbedOptions {
  Output output = Output::Embedding;
  bool flip_test = false;  // embeddings and pooled features only
  int batch = 32;
  int workers = 2;         // decode threads
};

struct EmbedResult {
  Tensor rows;                                        // f32 [kept, D] on the CPU
  std::vector<size_t> kept;                           // source index of each row
  std::vector<std::pair<size_t, std::string>> skipped;  // index and reason
};

class Embedder {
 public:
  // The model must live on ctx's device. Loads the landmark file or the face detector once.
  Embedder(InferenceModel& model, Context& ctx, FaceInputOptions input, EmbedOptions options);
  ~Embedder();

  // Rows in source order. An image that cannot be read or decoded, or has no face or landmarks, is
  // skipped (listed in `skipped` with the reason). `progress(done, total)` after each batch.
  EmbedResult run(const ImageSource& source, const std::function<void(int64_t, int64_t)>& progress = {});

  // The size x size crop of one image, or nullopt with `why` (undecodable, no face, no landmarks).
  std::optional<Image> prepare(const std::vector<uint8_t>& bytes, const std::string& name, FaceDetector* detector,
                               std::string& why) const;

  // The model's rows for u8 crops [n, size, size, 3] on the host (with flip-test when set).
  Tensor forward(const Tensor& crops);

  const FaceInputOptions& input() const { return input_; }

 private:
  Tensor forward_once(const Tensor& crops);

  InferenceModel& model_;
  Context& ctx_;
  FaceInputOptions input_;
  EmbedOptions options_;
  std::unordered_map<std::string, Landmarks> landmarks_;
  std::optional<FaceDetector> detector_;  // copied per decode thread
};

// An eval::ImageEmbedder (verification.h) over files. An image the embedder skips gets a zero row and
// its index and reason in `*skipped`: the caller drops the pairs that use it.
std::function<Tensor(const std::vector<std::filesystem::path>&)> image_embedder(
    Embedder& embedder, std::vector<std::pair<size_t, std::string>>* skipped,
    const std::function<void(int64_t, int64_t)>& progress = {});

}  // namespace cuface::eval
