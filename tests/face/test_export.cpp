// `cuface export`: the ONNX file run in onnxruntime (onnxruntime-node under Node.js, through
// scripts/onnx_embed.js) on real aligned LFW faces must give FaceModel's own embeddings and head
// logits; the safetensors export must hold the inference weights under torchvision's names; bad
// input must fail with one message and leave no file. The models are randomly initialised with
// BatchNorm statistics and affine parameters moved off 0 / 1, so folding them is really tested.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <set>

#include "common/source_dir.h"
#include "engine/safetensors.h"
#include "face/eval/inference_model.h"
#include "face/export/protobuf_writer.h"
#include "face/image/align.h"
#include "face/image/image.h"
#include "face/image/warp.h"
#include "face/model/face_model.h"
#include "face/pack/sources.h"
#include "face/train/checkpoint.h"
#include "cuface_program.h"
#include "data.h"

namespace cuface {
namespace {

namespace fs = std::filesystem;
using testing::cuface;
using testing::Outcome;
using testing::ScratchDir;

// ---- the protobuf writer against the wire format's documented encodings ----------------------------

std::string hex(const std::string& bytes) {
  std::string out;
  char b[4];
  for (unsigned char c : bytes) {
    std::snprintf(b, sizeof b, "%02x", c);
    out += b;
  }
  return out;
}

TEST(ProtoWriter, EncodesTheWireFormatsDocumentedExamples) {
  onnx::ProtoWriter w;
  w.varint_field(1, 150);  // protobuf.dev "Encoding": field 1 = 150 is 08 96 01
  EXPECT_EQ(hex(w.bytes()), "089601");
  onnx::ProtoWriter s;
  s.bytes_field(2, "testing");  // ... and field 2 = "testing" is 12 07 74 65 73 74 69 6e 67
  EXPECT_EQ(hex(s.bytes()), "120774657374696e67");
  onnx::ProtoWriter negative;
  negative.varint_field(3, -1);  // int64 -1: ten bytes, the two's complement's 64 bits
  EXPECT_EQ(hex(negative.bytes()), "18ffffffffffffffffff01");
  onnx::ProtoWriter f;
  f.float_field(2, 1.0f);  // wire type 5, IEEE 754 0x3f800000 little-endian
  EXPECT_EQ(hex(f.bytes()), "150000803f");
  onnx::ProtoWriter nested;
  nested.message_field(3, w);  // field 3 holding the 3-byte message above: 1a 03 08 96 01
  EXPECT_EQ(hex(nested.bytes()), "1a03089601");
  onnx::ProtoWriter wide;
  wide.varint_field(20, 2);  // field numbers above 15 take a two-byte key: (20 << 3) = 160 -> a0 01
  EXPECT_EQ(hex(wide.bytes()), "a00102");
}

// ---- models and faces --------------------------------------------------------------------------

// A model with both heads whose BatchNorms are all non-trivial (running statistics, scale and shift).
std::unique_ptr<FaceModel> random_model(const std::string& arch, int64_t embedding_size, uint64_t seed) {
  FaceModelOptions o;
  o.arch = arch;
  o.embedding_size = embedding_size;
  o.identities = 5;  // a training-only classifier the exports must leave out
  o.gender = true;
  o.gender_hidden = {8};
  o.age_classes = 7;
  o.age_hidden = {8, 6};
  o.seed = seed;
  auto model = std::make_unique<FaceModel>(o);
  std::mt19937 rng{uint32_t(seed)};
  std::uniform_real_distribution<float> mean(-0.2f, 0.2f), var(0.5f, 2.0f), gamma(0.6f, 1.4f), beta(-0.2f, 0.2f);
  std::set<std::string> batchnorms;  // prefixes of the layers with running statistics
  for (const NamedParameter& np : model->named_parameters())
    if (np.name.ends_with(".running_mean")) batchnorms.insert(np.name.substr(0, np.name.size() - 13));
  for (NamedParameter& np : model->named_parameters()) {
    const std::string prefix = np.name.substr(0, np.name.rfind('.'));
    const std::string local = np.name.substr(prefix.size() + 1);
    std::uniform_real_distribution<float>* draw = nullptr;
    if (batchnorms.count(prefix))
      draw = local == "running_mean" ? &mean : local == "running_var" ? &var : local == "weight" ? &gamma
           : local == "bias"         ? &beta : nullptr;
    if (!draw) continue;
    float* v = np.parameter->value.data<float>();
    for (int64_t i = 0; i < np.parameter->value.numel(); ++i) v[i] = (*draw)(rng);
  }
  model->set_training(false);
  return model;
}

const fs::path kLfw = fs::path(CUFACE_SHARED_DATA) / "lfw";
const std::vector<std::string> kFaces{"Aaron_Peirsol/Aaron_Peirsol_0001.jpg", "Aaron_Peirsol/Aaron_Peirsol_0002.jpg",
                                      "Abdullah_Gul/Abdullah_Gul_0001.jpg", "Abel_Pacheco/Abel_Pacheco_0001.jpg"};

// LFW faces aligned onto size x size crops from the landmark file, as `cuface embed --align` makes them.
std::vector<Image> aligned_faces(int size) {
  const auto landmarks = read_landmarks((kLfw / "landmarks5.txt").string());
  std::vector<Image> crops;
  for (const std::string& name : kFaces) {
    const std::vector<uint8_t> bytes = read_file((kLfw / "images" / name).string());
    Image image;
    std::string error;
    EXPECT_TRUE(decode_image(bytes.data(), bytes.size(), image, error)) << error;
    Affine map;
    EXPECT_TRUE(alignment_map(landmarks.at(name), size, map)) << name;
    crops.push_back(warp_to_size(image, map, size));
  }
  return crops;
}

// cuface's input for the crops: (x - 127.5) / 128, NHWC, written out here.
Tensor normalised(const std::vector<Image>& crops) {
  const int64_t size = crops[0].width;
  Tensor x = Tensor::empty({int64_t(crops.size()), size, size, 3});
  float* out = x.data<float>();
  for (const Image& image : crops)
    for (uint8_t pixel : image.pixels) *out++ = (float(pixel) - 127.5f) / 128.0f;
  return x;
}

// ---- onnxruntime -------------------------------------------------------------------------------

fs::path onnxruntime_modules() { return fs::path(testing::source_dir()) / "build-tools/onnxruntime/node_modules"; }

#define CUFACE_REQUIRE_ONNXRUNTIME()                                                                        \
  if (std::system("node --version > /dev/null 2>&1") != 0 ||                                              \
      !fs::exists(onnxruntime_modules() / "onnxruntime-node"))                                             \
  GTEST_SKIP() << "onnxruntime-node not found under " << onnxruntime_modules()                             \
               << " (or no node): scripts/setup.sh --all installs it"

struct OnnxOutputs {
  int status = -1;
  std::string err;
  std::map<std::string, Tensor> outputs;  // f32 [rows, cols]
};

// Runs `model` in onnxruntime on the crops (laid out as `layout` by the script).
OnnxOutputs run_onnxruntime(const ScratchDir& dir, const fs::path& model, const std::vector<Image>& crops,
                            const std::string& layout) {
  const int size = crops[0].width;
  {
    std::ofstream bytes(dir / "crops.u8", std::ios::binary);
    for (const Image& image : crops)
      bytes.write(reinterpret_cast<const char*>(image.pixels.data()), std::streamsize(image.pixels.size()));
  }
  const std::string command = "NODE_PATH=" + onnxruntime_modules().string() + " node " + testing::source_dir() +
                              "/scripts/onnx_embed.js " + model.string() + " " + (dir / "crops.u8").string() + " " +
                              std::to_string(crops.size()) + " " + std::to_string(size) + " " + layout + " 2 > " +
                              (dir / "ort.json").string() + " 2> " + (dir / "ort.err").string();
  const int raw = std::system(command.c_str());
  OnnxOutputs out;
  out.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  out.err = testing::slurp(dir / "ort.err");
  if (out.status != 0) return out;
  const nlohmann::json printed = nlohmann::json::parse(testing::slurp(dir / "ort.json"));
  for (const auto& [name, value] : printed.items()) {
    const std::vector<int64_t> dims = value["dims"];
    const std::vector<float> data = value["data"];
    EXPECT_EQ(dims.size(), 2u) << name;
    Tensor t = Tensor::empty({dims.at(0), dims.at(1)});
    EXPECT_EQ(size_t(t.numel()), data.size()) << name;
    std::copy(data.begin(), data.end(), t.data<float>());
    out.outputs.emplace(name, t);
  }
  return out;
}

// Largest difference over the largest magnitude of the reference: the "1e-4 relative" bound.
double relative_difference(const Tensor& actual, const Tensor& expected) {
  EXPECT_EQ(actual.shape(), expected.shape());
  if (actual.shape() != expected.shape()) return INFINITY;
  double worst = 0, scale = 0;
  for (int64_t i = 0; i < expected.numel(); ++i) {
    worst = std::max(worst, std::abs(double(actual.data<float>()[i]) - double(expected.data<float>()[i])));
    scale = std::max(scale, std::abs(double(expected.data<float>()[i])));
  }
  return worst / std::max(scale, 1e-30);
}

// Exports the model with and without --heads and checks each file's outputs in onnxruntime against
// the model's own embed() and classify() on the same crops (and, with `batch_of_one`, on one crop).
void expect_onnxruntime_matches(const std::string& arch, int64_t embedding_size, int size, const std::string& layout,
                                uint64_t seed, bool batch_of_one) {
  const std::vector<Image> crops = aligned_faces(size);
  ScratchDir dir;
  auto model = random_model(arch, embedding_size, seed);
  const fs::path checkpoint = dir / "m.safetensors";
  save_model(checkpoint.string(), *model, {{"arch", arch}});
  Context ctx(Device::CPU);
  const Tensor x = normalised(crops);
  const std::map<std::string, Tensor> expected{{"embedding", model->embed(ctx, x)},
                                               {"gender", model->classify(ctx, Task::Gender, x)},
                                               {"age", model->classify(ctx, Task::Age, x)}};
  for (bool heads : {false, true}) {
    SCOPED_TRACE(arch + (heads ? " with heads" : " without heads") + ", " + layout);
    const fs::path onnx = dir / (heads ? "heads.onnx" : "plain.onnx");
    const Outcome exported = cuface(dir, "export " + checkpoint.string() + " --format onnx --out " + onnx.string() +
                                             " --layout " + layout + " --input-size " + std::to_string(size) +
                                             (heads ? " --heads" : ""));
    ASSERT_EQ(exported.status, 0) << exported.err;
    EXPECT_NE(exported.out.find("export: " + checkpoint.string() + " -> " + onnx.string()), std::string::npos)
        << exported.out;
    const OnnxOutputs ort = run_onnxruntime(dir, onnx, crops, layout);
    ASSERT_EQ(ort.status, 0) << ort.err;
    ASSERT_EQ(ort.outputs.size(), heads ? 3u : 1u);
    for (const auto& [name, actual] : ort.outputs) {
      ASSERT_TRUE(expected.count(name)) << "unexpected output " << name;
      EXPECT_LE(relative_difference(actual, expected.at(name)), 1e-4) << name;
    }
    if (batch_of_one) {  // the batch dimension is dynamic: one image gives that image's row
      const OnnxOutputs one = run_onnxruntime(dir, onnx, {crops[1]}, layout);
      ASSERT_EQ(one.status, 0) << one.err;
      EXPECT_LE(relative_difference(one.outputs.at("embedding"), expected.at("embedding").slice(1, 2)), 1e-4);
    }
  }
}

TEST(ExportOnnx, TinyInOnnxruntimeGivesCufacesEmbeddingAndHeadsOnAlignedLfwFaces) {
  CUFACE_REQUIRE_SHARED_DATA("lfw/landmarks5.txt");
  CUFACE_REQUIRE_ONNXRUNTIME();
  expect_onnxruntime_matches("tiny", 64, 112, "nhwc", 3, true);
}

TEST(ExportOnnx, ResNet50InOnnxruntimeGivesCufacesEmbeddingAndHeadsOnAlignedLfwFaces) {
  CUFACE_REQUIRE_SHARED_DATA("lfw/landmarks5.txt");
  CUFACE_REQUIRE_ONNXRUNTIME();
  expect_onnxruntime_matches("resnet50", 512, 48, "nchw", 5, false);
}

TEST(ExportOnnx, ResNet18BasicBlocksInOnnxruntimeGiveCufacesOutputs) {
  CUFACE_REQUIRE_SHARED_DATA("lfw/landmarks5.txt");
  CUFACE_REQUIRE_ONNXRUNTIME();
  expect_onnxruntime_matches("resnet18", 128, 32, "nhwc", 9, false);
}

// ---- safetensors -------------------------------------------------------------------------------

TEST(ExportSafetensors, InferenceWeightsUnderTorchvisionNamesLoadBackToTheSameModel) {
  ScratchDir dir;
  auto model = random_model("tiny", 16, 7);
  const std::string checkpoint = (dir / "m.safetensors").string();
  save_model(checkpoint, *model, {{"arch", "tiny"}});
  std::map<std::string, Tensor> original;
  for (auto& [name, tensor] : export_state(*model)) original.emplace(name, tensor);
  Context ctx(Device::CPU);
  Tensor x = Tensor::empty({2, 32, 32, 3});
  std::mt19937 rng{11};
  std::uniform_real_distribution<float> pixel(-1.0f, 1.0f);
  for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = pixel(rng);

  for (bool heads : {false, true}) {
    SCOPED_TRACE(heads ? "with --heads" : "without --heads");
    const fs::path out = dir / (heads ? "heads.safetensors" : "plain.safetensors");
    const Outcome run =
        cuface(dir, "export " + checkpoint + " --format safetensors --out " + out.string() + (heads ? " --heads" : ""));
    ASSERT_EQ(run.status, 0) << run.err;
    EXPECT_NE(run.out.find("export: " + checkpoint + " -> " + out.string() + " (safetensors"), std::string::npos)
        << run.out;

    const SafetensorsFile file = load_safetensors(out.string());
    EXPECT_EQ(file.metadata.at("arch"), "tiny");
    EXPECT_EQ(file.metadata.at("input_normalisation").find("(x - 127.5) * 0.0078125"), 0u);
    // torchvision's names and layouts for the backbone (OIHW convolutions, BN buffers included).
    EXPECT_EQ(file.tensors.at("conv1.weight").shape(), Shape({8, 3, 7, 7}));
    EXPECT_TRUE(file.tensors.count("layer2.0.downsample.0.weight"));
    EXPECT_TRUE(file.tensors.count("layer4.0.bn3.num_batches_tracked"));
    EXPECT_FALSE(file.tensors.count("fr.weight")) << "the training-only classifier is no inference weight";
    size_t expected_count = 0;
    for (const auto& [name, tensor] : original) {
      const bool head = name.starts_with("gender.") || name.starts_with("age.");
      if (name.starts_with("fr.") || (head && !heads)) continue;
      ++expected_count;
      ASSERT_TRUE(file.tensors.count(name)) << name;
      const Tensor& saved = file.tensors.at(name);
      ASSERT_EQ(saved.shape(), tensor.shape()) << name;
      ASSERT_EQ(saved.dtype(), tensor.dtype()) << name;
      EXPECT_EQ(std::memcmp(saved.raw(), tensor.raw(), tensor.bytes()), 0) << name;
    }
    EXPECT_EQ(file.tensors.size(), expected_count);

    // cuface loads it as it loads a checkpoint: the same embedding (and heads) from the same weights.
    const eval::InferenceModel loaded = eval::load_inference_model(out, Device::CPU);
    EXPECT_EQ(relative_difference(loaded.model->embed(ctx, x), model->embed(ctx, x)), 0.0);
    EXPECT_EQ(loaded.model->has_head(Task::Gender), heads);
    if (heads) {
      const Tensor age = model->classify(ctx, Task::Age, x);
      EXPECT_EQ(relative_difference(loaded.model->classify(ctx, Task::Age, x), age), 0.0);
    }
  }
}

// ---- bad input -----------------------------------------------------------------------------------

std::vector<std::string> files_in(const ScratchDir& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir.path())) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

TEST(ExportCommand, BadInputIsOneClearErrorAndLeavesNoFile) {
  ScratchDir dir;
  FaceModelOptions plain;
  plain.arch = "tiny";
  plain.embedding_size = 16;
  FaceModel model(plain);  // no gender or age head
  const std::string checkpoint = (dir / "m.safetensors").string();
  save_model(checkpoint, model, {{"arch", "tiny"}});
  const std::string backbone = (dir / "backbone.safetensors").string();
  save_model(backbone, model.backbone());
  const std::string out = (dir / "m.onnx").string();

  Outcome r = cuface(dir, "export " + (dir / "absent").string() + " --format onnx --out " + out);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find((dir / "absent").string() + "' does not exist"), std::string::npos) << r.err;

  r = cuface(dir, "export " + checkpoint + " --format tflite --out " + out);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("--format"), std::string::npos) << r.err;

  r = cuface(dir, "export " + checkpoint + " --format onnx --heads --out " + out);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("--heads: '" + checkpoint + "' has neither a gender nor an age head"), std::string::npos)
      << r.err;

  r = cuface(dir, "export " + backbone + " --format onnx --out " + out);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("is a backbone without an embedding layer"), std::string::npos) << r.err;

  r = cuface(dir, "export " + checkpoint + " --format safetensors --layout nhwc --out " + out);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("--layout applies to --format onnx only"), std::string::npos) << r.err;

  r = cuface(dir, "export " + checkpoint + " --format onnx --out " + (dir / "no_folder" / "m.onnx").string());
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("no_folder does not exist"), std::string::npos) << r.err;

  // Nothing was written by any of them, not even a temporary.
  EXPECT_EQ(files_in(dir), (std::vector<std::string>{"backbone.safetensors", "m.safetensors", "stderr", "stdout"}));

  // An existing --out stays as it was unless --force.
  dir.write("m.onnx", "mine");
  r = cuface(dir, "export " + checkpoint + " --format onnx --out " + out);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("--out " + out + " already exists (--force replaces it)"), std::string::npos) << r.err;
  EXPECT_EQ(testing::slurp(out), "mine");
  r = cuface(dir, "export " + checkpoint + " --format onnx --force --out " + out);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_GT(fs::file_size(out), 4u);
}

}  // namespace
}  // namespace cuface
