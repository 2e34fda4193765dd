// Inference from saved models: `cuface embed`, `verify`, `eval-fr --model`, `eval-attr --model` and
// `classify` run as a program on a tiny FaceModel saved by the test, and their outputs are compared
// with FaceModel::embed / pooled_features / classify called directly on images the test normalises
// itself ((x - 127.5) / 128, the trainer's input), so the program's loading, decoding, batching,
// normalisation and flip-test are all checked against an independent path.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <sys/wait.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>

#include "common/backends.h"
#include "engine/safetensors.h"
#include "face/eval/attributes.h"
#include "face/eval/npy.h"
#include "face/image/align.h"
#include "face/image/detect.h"
#include "face/model/face_model.h"
#include "face/eval/pair_sampler.h"
#include "face/eval/verification.h"
#include "face/pack/pack.h"
#include "face/pack/packer.h"
#include "face/pack/sources.h"
#include "face/train/demo.h"
#include "face/train/checkpoint.h"
#include "cuface_program.h"
#include "data.h"

namespace cuface {
namespace {

namespace fs = std::filesystem;
using testing::ScratchDir;

constexpr int kSize = 32;

using testing::cuface;
using testing::Outcome;
using testing::slurp;

// A tiny model with every head, whose BN running statistics are moved off their initial 0 / 1 so a
// forward in training mode (batch statistics) could not pass for evaluation mode.
FaceModelOptions tiny_options(uint64_t seed) {
  FaceModelOptions o;
  o.arch = "tiny";
  o.embedding_size = 16;
  o.identities = 5;
  o.gender = true;
  o.gender_hidden = {8};
  o.age_classes = 7;
  o.age_hidden = {8, 6};
  o.seed = seed;
  return o;
}

std::unique_ptr<FaceModel> tiny_model(uint64_t seed) {
  auto model = std::make_unique<FaceModel>(tiny_options(seed));
  std::mt19937 rng{uint32_t(seed)};
  std::uniform_real_distribution<float> mean(-0.2f, 0.2f), var(0.5f, 2.0f);
  for (NamedParameter& np : model->named_parameters()) {
    const bool is_mean = np.name.ends_with("running_mean"), is_var = np.name.ends_with("running_var");
    if (!is_mean && !is_var) continue;
    float* v = np.parameter->value.data<float>();
    for (int64_t i = 0; i < np.parameter->value.numel(); ++i) v[i] = is_mean ? mean(rng) : var(rng);
  }
  model->set_training(false);
  return model;
}

// A smooth random colour pattern, different for each seed.
Image pattern(int width, int height, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  const double fx = 0.05 + 0.3 * u(rng), fy = 0.05 + 0.3 * u(rng), phase = 6.28 * u(rng);
  Image image(width, height);
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x)
      for (int c = 0; c < 3; ++c) {
        const double v = 127.5 + 120 * std::sin(fx * x * (c + 1) + fy * y + phase + c);
        image.row(y)[x * 3 + c] = uint8_t(std::lround(std::clamp(v, 0.0, 255.0)));
      }
  return image;
}

void write_png(const fs::path& file, const Image& image) {
  fs::create_directories(file.parent_path());
  const std::vector<uint8_t> bytes = encode_png(image);
  std::ofstream(file, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

Image read_image(const fs::path& file) {
  const std::vector<uint8_t> bytes = read_file(file.string());
  Image image;
  std::string error;
  EXPECT_TRUE(decode_image(bytes.data(), bytes.size(), image, error)) << error;
  return image;
}

// The network input of decoded kSize x kSize images, written out here rather than by the kernel.
Tensor normalised(const std::vector<Image>& images, bool mirror = false) {
  Tensor x = Tensor::empty({int64_t(images.size()), kSize, kSize, 3});
  float* out = x.data<float>();
  for (const Image& image : images)
    for (int y = 0; y < kSize; ++y)
      for (int col = 0; col < kSize; ++col)
        for (int c = 0; c < 3; ++c)
          *out++ = (float(image.row(y)[(mirror ? kSize - 1 - col : col) * 3 + c]) - 127.5f) / 128.0f;
  return x;
}

void expect_rows_near(const Tensor& actual, const Tensor& expected, double tolerance, const std::string& what) {
  ASSERT_EQ(actual.shape(), expected.shape()) << what;
  double worst = 0, scale = 0;
  for (int64_t i = 0; i < expected.numel(); ++i) {
    worst = std::max(worst, std::abs(double(actual.data<float>()[i]) - double(expected.data<float>()[i])));
    scale = std::max(scale, std::abs(double(expected.data<float>()[i])));
  }
  EXPECT_LE(worst, tolerance * std::max(scale, 1.0)) << what;
}

// Images under dir/images: two people, `per_person` images each, kSize x kSize PNG.
std::vector<fs::path> write_images(const ScratchDir& dir, int per_person = 3) {
  std::vector<fs::path> files;
  for (const char* person : {"ann", "bob"})
    for (int i = 1; i <= per_person; ++i) {
      const fs::path file = dir / "images" / person / (std::string(person) + "_" + std::to_string(i) + ".png");
      write_png(file, pattern(kSize, kSize, uint32_t(files.size() * 7 + 1)));
      files.push_back(file);
    }
  return files;  // sorted: ann_1.. then bob_1..
}

std::vector<Image> read_images(const std::vector<fs::path>& files) {
  std::vector<Image> images;
  for (const fs::path& f : files) images.push_back(read_image(f));
  return images;
}

TEST(Embed, NpyRowsEqualFaceModelEmbedOnTheSameImages) {
  ScratchDir dir;
  const std::vector<fs::path> files = write_images(dir);
  auto model = tiny_model(11);
  save_model((dir / "model.safetensors").string(), *model);  // no metadata: the arch is inferred

  // --batch 4 splits the 6 images into a full and a short batch.
  const Outcome run = cuface(dir, "embed --model " + (dir / "model.safetensors").string() + " --images " +
                                      (dir / "images").string() + " --out " + (dir / "emb.npy").string() +
                                      " --input-size 32 --batch 4 --device cpu");
  ASSERT_EQ(run.status, 0) << run.err;
  EXPECT_NE(run.out.find("embeddings/s"), std::string::npos) << run.out;  // the one-line summary
  const eval::Embeddings e = eval::read_embeddings(dir / "emb.npy");
  ASSERT_EQ(e.paths.size(), files.size());
  for (size_t i = 0; i < files.size(); ++i) EXPECT_EQ(fs::path(e.paths[i]), files[i]);  // sorted, recursive

  Context ctx(Device::CPU);
  const Tensor expected = model->embed(ctx, normalised(read_images(files)));
  expect_rows_near(e.matrix, expected, 1e-5, "embed rows");
  // No temporary file is left beside the outputs.
  for (const auto& f : fs::directory_iterator(dir.path()))
    EXPECT_EQ(f.path().string().find(".tmp"), std::string::npos) << f.path();

  // An --out in a missing folder is named as such before any image is embedded (no progress line).
  const Outcome nowhere = cuface(dir, "embed --model " + (dir / "model.safetensors").string() + " --images " +
                                          (dir / "images").string() + " --out " + (dir / "no" / "emb.npy").string() +
                                          " --input-size 32");
  EXPECT_EQ(nowhere.status, 1);
  EXPECT_NE(nowhere.err.find("--out " + (dir / "no" / "emb.npy").string() + ": folder " + (dir / "no").string() +
                             " does not exist"),
            std::string::npos)
      << nowhere.err;
  EXPECT_EQ(nowhere.err.find("embedding "), std::string::npos) << nowhere.err;
}

TEST(Embed, FlipTestIsTheSumOfImageAndMirror) {
  ScratchDir dir;
  const std::vector<fs::path> files = write_images(dir, 2);
  auto model = tiny_model(12);
  save_model((dir / "m.safetensors").string(), *model, {{"arch", "tiny"}});
  const Outcome run = cuface(dir, "embed --model " + (dir / "m.safetensors").string() + " --images " +
                                      (dir / "images").string() + " --out " + (dir / "flip.npy").string() +
                                      " --input-size 32 --flip-test --device cpu");
  ASSERT_EQ(run.status, 0) << run.err;
  Context ctx(Device::CPU);
  const std::vector<Image> images = read_images(files);
  const Tensor plain = model->embed(ctx, normalised(images)).clone();  // kept apart from the next call
  const Tensor mirrored = model->embed(ctx, normalised(images, true));
  Tensor expected = Tensor::empty(plain.shape());
  double mirror_matters = 0;  // the images are not symmetric: twice the plain rows would be wrong
  for (int64_t i = 0; i < plain.numel(); ++i) {
    expected.data<float>()[i] = plain.data<float>()[i] + mirrored.data<float>()[i];
    mirror_matters = std::max(mirror_matters, std::abs(double(plain.data<float>()[i]) - mirrored.data<float>()[i]));
  }
  EXPECT_GT(mirror_matters, 1e-3);
  expect_rows_near(eval::read_npy(dir / "flip.npy"), expected, 1e-5, "flip-test rows");
}

// `cuface embed --device cuda` in fp32 and with a bf16 backbone (bf16 input images, f32 rows out),
// flip-test included, against the CPU model on the same decoded images.
TEST(EmbedCuda, FlipTestRowsFollowTheCpuModel) {
  CUFACE_REQUIRE_GPU();
  ScratchDir dir;
  const std::vector<fs::path> files = write_images(dir);
  auto model = tiny_model(13);
  save_model((dir / "m.safetensors").string(), *model, {{"arch", "tiny"}});
  Context ctx(Device::CPU);
  const std::vector<Image> images = read_images(files);
  Tensor expected = model->embed(ctx, normalised(images)).clone();
  const Tensor mirrored = model->embed(ctx, normalised(images, true));
  for (int64_t i = 0; i < expected.numel(); ++i) expected.data<float>()[i] += mirrored.data<float>()[i];
  for (const std::string precision : {"fp32", "bf16"}) {
    const fs::path out = dir / (precision + ".npy");
    const Outcome run = cuface(dir, "embed --model " + (dir / "m.safetensors").string() + " --images " +
                                        (dir / "images").string() + " --out " + out.string() +
                                        " --input-size 32 --batch 4 --flip-test --device cuda --precision " + precision);
    ASSERT_EQ(run.status, 0) << run.err;
    expect_rows_near(eval::read_npy(out), expected, precision == "fp32" ? 1e-4 : 5e-2, precision + " rows");
  }
}

TEST(Embed, RunFolderLoadsItsLatestCheckpointAndConfig) {
  ScratchDir dir;
  const std::vector<fs::path> files = write_images(dir, 1);
  auto older = tiny_model(21), newer = tiny_model(22);
  fs::create_directories(dir / "run");
  save_model((dir / "run" / "model-3.safetensors").string(), *older, {{"arch", "tiny"}});
  save_model((dir / "run" / "model-5.safetensors").string(), *newer, {{"arch", "tiny"}});
  dir.write("run/latest", "5\n");
  dir.write("run/config.json", R"({"arch": "tiny", "input_size": 32, "task": "multi"})");
  // No --input-size: config.json's 32 applies (a 112 input would give other numbers, not an error).
  const Outcome run = cuface(dir, "embed --model " + (dir / "run").string() + " --images " + (dir / "images").string() +
                                      " --out " + (dir / "run.npy").string() + " --device cpu");
  ASSERT_EQ(run.status, 0) << run.err;
  EXPECT_NE(run.out.find("model-5.safetensors"), std::string::npos) << run.out;
  Context ctx(Device::CPU);
  expect_rows_near(eval::read_npy(dir / "run.npy"), newer->embed(ctx, normalised(read_images(files))), 1e-5,
                   "latest checkpoint");

  dir.write("run/latest", "7\n");
  const Outcome missing = cuface(dir, "embed --model " + (dir / "run").string() + " --images " +
                                          (dir / "images").string() + " --out " + (dir / "x.npy").string());
  EXPECT_EQ(missing.status, 1);
  EXPECT_NE(missing.err.find("model-7.safetensors"), std::string::npos) << missing.err;
}

TEST(Embed, TorchvisionNamedBackboneGivesPooledFeatures) {
  ScratchDir dir;
  const std::vector<fs::path> files = write_images(dir, 2);
  ResNet backbone(resnet_spec("tiny"), 5);
  // Move the running statistics so evaluation mode matters.
  for (NamedParameter& np : backbone.named_parameters())
    if (np.name.ends_with("running_var"))
      for (int64_t i = 0; i < np.parameter->value.numel(); ++i) np.parameter->value.data<float>()[i] = 1.5f + 0.01f * float(i % 7);
  std::vector<std::pair<std::string, Tensor>> state = export_state(backbone);
  state.emplace_back("fc.weight", Tensor::zeros({10, backbone.features()}));  // torchvision's classifier: ignored
  state.emplace_back("fc.bias", Tensor::zeros({10}));
  save_safetensors((dir / "torchvision.safetensors").string(), state);

  const std::string common = "--model " + (dir / "torchvision.safetensors").string() + " --images " +
                             (dir / "images").string() + " --input-size 32 --device cpu --out ";
  const Outcome run = cuface(dir, "embed --features pooled " + common + (dir / "pooled.npy").string());
  ASSERT_EQ(run.status, 0) << run.err;
  Context ctx(Device::CPU);
  backbone.set_training(false);
  const Tensor expected = backbone.forward(ctx, normalised(read_images(files)));
  ASSERT_EQ(expected.size(1), 256);
  expect_rows_near(eval::read_npy(dir / "pooled.npy"), expected, 1e-5, "pooled features");

  const Outcome no_embedding = cuface(dir, "embed " + common + (dir / "e.npy").string());
  EXPECT_EQ(no_embedding.status, 1);
  EXPECT_NE(no_embedding.err.find("use --features pooled"), std::string::npos) << no_embedding.err;
}

TEST(Embed, MisfittingTensorsAreOneErrorListingTheirNames) {
  ScratchDir dir;
  write_images(dir, 1);
  auto model = tiny_model(31);
  std::vector<std::pair<std::string, Tensor>> state;
  for (auto& [name, tensor] : export_state(*model)) {
    if (name == "layer2.0.bn1.running_var") continue;                                      // missing
    if (name == "layer1.0.conv2.weight") tensor = Tensor::zeros({8, 8, 1, 1});            // misshapen
    state.emplace_back(name, tensor);
  }
  state.emplace_back("extra.weight", Tensor::zeros({3}));                                 // unexpected
  save_safetensors((dir / "bad.safetensors").string(), state, {{"arch", "tiny"}});
  const Outcome run = cuface(dir, "embed --model " + (dir / "bad.safetensors").string() + " --images " +
                                      (dir / "images").string() + " --out " + (dir / "e.npy").string());
  EXPECT_EQ(run.status, 1);
  for (const char* expected : {"bad.safetensors", "missing 1 (layer2.0.bn1.running_var)", "unexpected 1 (extra.weight)",
                               "mismatched 1 (layer1.0.conv2.weight: file f32[8, 8, 1, 1]"})
    EXPECT_NE(run.err.find(expected), std::string::npos) << expected << "\n" << run.err;
  EXPECT_FALSE(fs::exists(dir / "e.npy"));

  const Outcome not_resnet = cuface(dir, "embed --model " + (dir / "images/ann/ann_1.png").string() + " --images " +
                                             (dir / "images").string() + " --out " + (dir / "e.npy").string());
  EXPECT_EQ(not_resnet.status, 1);
  EXPECT_NE(not_resnet.err.find("ann_1.png"), std::string::npos) << not_resnet.err;
}

// 3 people x 3 JPEG images in LFW's layout and an LFW pairs file over them.
void write_lfw_like(const ScratchDir& dir) {
  uint32_t seed = 100;
  for (const char* person : {"Ann", "Bob", "Cy"})
    for (int i = 1; i <= 3; ++i) {
      char name[64];
      std::snprintf(name, sizeof name, "%s/%s_%04d.jpg", person, person, i);
      dir.write("lfw/" + std::string(name), "");
      const std::vector<uint8_t> jpeg = encode_jpeg(pattern(kSize, kSize, seed++), 95);
      std::ofstream(dir / "lfw" / name, std::ios::binary)
          .write(reinterpret_cast<const char*>(jpeg.data()), std::streamsize(jpeg.size()));
    }
  dir.write("pairs.txt", "2 3\nAnn 1 2\nBob 1 3\nCy 2 3\nAnn 1 Bob 2\nBob 3 Cy 1\nCy 3 Ann 2\n"
                         "Ann 2 3\nBob 2 3\nCy 1 2\nAnn 3 Cy 1\nBob 1 Ann 1\nCy 2 Bob 2\n");
}

TEST(EvalFrModel, SameReportAsEmbeddingsFromCufaceEmbed) {
  ScratchDir dir;
  write_lfw_like(dir);
  auto model = tiny_model(41);
  const std::string m = (dir / "m.safetensors").string();
  save_model(m, *model, {{"arch", "tiny"}});
  const std::string lfw = (dir / "lfw").string(), pairs = (dir / "pairs.txt").string();
  // --batch 1 in both: each image goes through the network alone, so the rows agree to the bit.
  ASSERT_EQ(cuface(dir, "embed --model " + m + " --images " + lfw + " --out " + (dir / "emb.npy").string() +
                            " --input-size 32 --batch 1 --device cpu")
                .status,
            0);
  const Outcome from_npy = cuface(dir, "eval-fr --embeddings " + (dir / "emb.npy").string() + " --pairs " + pairs +
                                           " --images " + lfw + " --report " + (dir / "a.json").string());
  ASSERT_EQ(from_npy.status, 0) << from_npy.err;
  const Outcome from_model = cuface(dir, "eval-fr --model " + m + " --pairs " + pairs + " --images " + lfw +
                                             " --input-size 32 --batch 1 --device cpu --report " +
                                             (dir / "b.json").string());
  ASSERT_EQ(from_model.status, 0) << from_model.err;
  EXPECT_NE(from_model.out.find("embedded 9 images"), std::string::npos) << from_model.out;
  nlohmann::json a = nlohmann::json::parse(slurp(dir / "a.json")), b = nlohmann::json::parse(slurp(dir / "b.json"));
  a.erase("embeddings");
  b.erase("model");
  EXPECT_EQ(a, b) << a.dump(1) << "\n" << b.dump(1);
  EXPECT_EQ(b["pairs"], 12);
}

// An InsightFace .bin as Python 2 pickles it (protocol 2: MARK MARK images LIST, EMPTY_LIST MARK flags
// APPENDS, TUPLE): images as BINSTRING, flags as BININT1.
std::string insightface_bin(const std::vector<std::vector<uint8_t>>& jpegs, const std::vector<int>& same) {
  std::string s = "\x80\x02((";
  for (const std::vector<uint8_t>& jpeg : jpegs) {
    s += 'T';
    for (int i = 0; i < 4; ++i) s += char((jpeg.size() >> (8 * i)) & 0xff);
    s.append(jpeg.begin(), jpeg.end());
  }
  s += "l](";
  for (int flag : same) s += std::string("K") + char(flag);
  return s + "et.";
}

// --bin with --model decodes the .bin's JPEGs: the same report as embedding them from files.
TEST(EvalFrModel, BinJpegsGiveTheSameReportAsTheirFiles) {
  ScratchDir dir;
  std::vector<std::vector<uint8_t>> jpegs;
  for (int i = 0; i < 12; ++i) {
    jpegs.push_back(encode_jpeg(pattern(40, 40, uint32_t(300 + i)), 90));
    dir.write("bin/" + std::to_string(100 + i) + ".jpg", std::string(jpegs.back().begin(), jpegs.back().end()));
  }
  const fs::path bin = dir.write("set.bin", insightface_bin(jpegs, {1, 0, 1, 0, 0, 1}));
  auto model = tiny_model(43);
  const std::string m = (dir / "m.safetensors").string();
  save_model(m, *model, {{"arch", "tiny"}});
  const std::string options = " --input-size 32 --batch 1 --device cpu";
  ASSERT_EQ(cuface(dir, "embed --model " + m + " --images " + (dir / "bin").string() + " --out " +
                            (dir / "emb.npy").string() + options)
                .status,
            0);
  const std::string common = "eval-fr --bin " + bin.string() + " --folds 3 --report ";
  const Outcome from_npy = cuface(dir, common + (dir / "a.json").string() + " --embeddings " + (dir / "emb.npy").string());
  ASSERT_EQ(from_npy.status, 0) << from_npy.err;
  const Outcome from_model = cuface(dir, common + (dir / "b.json").string() + " --model " + m + options);
  ASSERT_EQ(from_model.status, 0) << from_model.err;
  nlohmann::json a = nlohmann::json::parse(slurp(dir / "a.json")), b = nlohmann::json::parse(slurp(dir / "b.json"));
  a.erase("embeddings");
  b.erase("model");
  EXPECT_EQ(a, b) << a.dump(1) << "\n" << b.dump(1);
  EXPECT_EQ(b["pairs"], 6);
}

TEST(EvalFrModel, BadPairsLineAndMissingImageNameTheLine) {
  ScratchDir dir;
  write_lfw_like(dir);
  auto model = tiny_model(42);
  const std::string m = (dir / "m.safetensors").string();
  save_model(m, *model, {{"arch", "tiny"}});
  const std::string common = "eval-fr --model " + m + " --images " + (dir / "lfw").string() + " --input-size 32 --pairs ";
  dir.write("missing.txt", "1 2\nAnn 1 2\nBob 1 9\nAnn 1 Bob 2\nCy 1 Ann 2\n");
  const Outcome missing = cuface(dir, common + (dir / "missing.txt").string());
  EXPECT_EQ(missing.status, 1);
  EXPECT_NE(missing.err.find("missing.txt:3"), std::string::npos) << missing.err;
  dir.write("bad.txt", "1 2\nAnn 1 2\nBob one 2\nAnn 1 Bob 2\nCy 1 Ann 2\n");
  const Outcome bad = cuface(dir, common + (dir / "bad.txt").string());
  EXPECT_EQ(bad.status, 1);
  EXPECT_NE(bad.err.find("bad.txt:3"), std::string::npos) << bad.err;
}

TEST(Verify, CosineEqualsTheOneFromEmbedRows) {
  ScratchDir dir;
  const std::vector<fs::path> files = write_images(dir, 1);  // ann_1, bob_1
  auto model = tiny_model(51);
  const std::string m = (dir / "m.safetensors").string();
  save_model(m, *model, {{"arch", "tiny"}});
  ASSERT_EQ(cuface(dir, "embed --model " + m + " --images " + (dir / "images").string() + " --out " +
                            (dir / "e.npy").string() + " --input-size 32")
                .status,
            0);
  const Tensor rows = eval::read_npy(dir / "e.npy");
  double dot = 0, na = 0, nb = 0;
  for (int64_t k = 0; k < rows.size(1); ++k) {
    const double a = rows.data<float>()[k], b = rows.data<float>()[rows.size(1) + k];
    dot += a * b, na += a * a, nb += b * b;
  }
  const double expected = dot / std::sqrt(na * nb);

  const Outcome run = cuface(dir, "verify --model " + m + " " + files[0].string() + " " + files[1].string() +
                                      " --input-size 32 --threshold " + std::to_string(expected - 0.01));
  ASSERT_EQ(run.status, 0) << run.err;
  const size_t at = run.out.find("cosine similarity ");
  ASSERT_NE(at, std::string::npos) << run.out;
  EXPECT_NEAR(std::stod(run.out.substr(at + 18)), expected, 1e-5);
  EXPECT_NE(run.out.find("verify: same person"), std::string::npos) << run.out;
  const Outcome above = cuface(dir, "verify --model " + m + " " + files[0].string() + " " + files[1].string() +
                                        " --input-size 32 --threshold " + std::to_string(expected + 0.01));
  EXPECT_NE(above.out.find("verify: different people"), std::string::npos) << above.out;
}

TEST(Classify, WritesLabelFoldersAndScoresOfTheGenderHead) {
  ScratchDir dir;
  const std::vector<fs::path> files = write_images(dir, 3);
  auto model = tiny_model(61);
  const std::string m = (dir / "m.safetensors").string();
  save_model(m, *model, {{"arch", "tiny"}});
  const Outcome run = cuface(dir, "classify --model " + m + " --task gender --images " + (dir / "images").string() +
                                      " --out " + (dir / "sorted").string() + " --input-size 32");
  ASSERT_EQ(run.status, 0) << run.err;

  Context ctx(Device::CPU);
  const Tensor logits = model->classify(ctx, Task::Gender, normalised(read_images(files)));
  std::istringstream csv(slurp(dir / "sorted" / "scores.csv"));
  std::string line;
  std::getline(csv, line);
  EXPECT_EQ(line, "path,predicted,p_male,p_female");
  for (size_t i = 0; i < files.size(); ++i) {
    ASSERT_TRUE(std::getline(csv, line));
    const float* z = logits.data<float>() + 2 * i;
    const std::string label = z[1] > z[0] ? "female" : "male";
    EXPECT_EQ(line.substr(0, line.find(',', files[i].string().size() + 1)), files[i].string() + "," + label);
    const double p_female = std::stod(line.substr(line.rfind(',') + 1));
    EXPECT_NEAR(p_female, 1.0 / (1.0 + std::exp(double(z[0]) - double(z[1]))), 1e-5);
    const fs::path placed = dir / "sorted" / label / (files[i].parent_path().filename().string() + "__" +
                                                      files[i].filename().string());
    EXPECT_TRUE(fs::exists(placed)) << placed;
    EXPECT_EQ(slurp(placed), slurp(files[i]));
  }
  EXPECT_FALSE(std::getline(csv, line));

  // The same --out again: refused (its old label folders would mix with the new run's), nothing touched.
  const std::string scores = slurp(dir / "sorted" / "scores.csv");
  const Outcome again = cuface(dir, "classify --model " + m + " --task age --images " + (dir / "images").string() +
                                        " --out " + (dir / "sorted").string() + " --input-size 32");
  EXPECT_EQ(again.status, 1);
  EXPECT_NE(again.err.find("--out " + (dir / "sorted").string() + " exists and is not an empty folder"),
            std::string::npos)
      << again.err;
  EXPECT_EQ(slurp(dir / "sorted" / "scores.csv"), scores);

  // --limit samples that many, reproducibly.
  const std::string limited = "classify --model " + m + " --task age --images " + (dir / "images").string() +
                              " --input-size 32 --limit 2 --seed 3 --out ";
  ASSERT_EQ(cuface(dir, limited + (dir / "a").string()).status, 0);
  ASSERT_EQ(cuface(dir, limited + (dir / "b").string()).status, 0);
  const std::string a = slurp(dir / "a" / "scores.csv");
  EXPECT_EQ(std::count(a.begin(), a.end(), '\n'), 3);
  EXPECT_EQ(a, slurp(dir / "b" / "scores.csv"));
  EXPECT_EQ(a.substr(0, a.find('\n')), "path,predicted,p_0-12,p_13-19,p_20-29,p_30-39,p_40-49,p_50-59,p_60+");
}

TEST(EvalAttrModel, AccuracyOfTheGenderHeadOnLabelledFolders) {
  ScratchDir dir;
  auto model = tiny_model(71);
  const std::string m = (dir / "m.safetensors").string();
  save_model(m, *model, {{"arch", "tiny"}});
  std::vector<fs::path> files;
  std::vector<int> truth;
  for (int i = 0; i < 8; ++i) {
    const std::string label = i % 2 ? "female" : "male";
    files.push_back(dir / "labelled" / label / (std::to_string(i) + ".png"));
    write_png(files.back(), pattern(kSize, kSize, uint32_t(500 + i)));
    truth.push_back(i % 2);
  }
  std::sort(files.begin(), files.end());
  Context ctx(Device::CPU);
  const Tensor logits = model->classify(ctx, Task::Gender, normalised(read_images(files)));
  int correct = 0;
  for (size_t i = 0; i < files.size(); ++i) {
    const int predicted = logits.data<float>()[2 * i + 1] > logits.data<float>()[2 * i] ? 1 : 0;
    correct += predicted == (files[i].parent_path().filename() == "female" ? 1 : 0);
  }
  const Outcome run = cuface(dir, "eval-attr --model " + m + " --task gender --images " + (dir / "labelled").string() +
                                      " --truth folder --input-size 32 --report " + (dir / "r.json").string());
  ASSERT_EQ(run.status, 0) << run.err;
  const nlohmann::json report = nlohmann::json::parse(slurp(dir / "r.json"));
  EXPECT_EQ(report["samples"], 8);
  EXPECT_DOUBLE_EQ(report["overall_accuracy"].get<double>(), correct / 8.0);
}

// UTKFace names give the true age; the run's config.json gives the age bins (here 3: [0, 20), [20, 40),
// [40, inf)), which both the truth and classify's label names follow.
TEST(EvalAttrModel, UtkFaceAgeUsesTheRunsBinEdges) {
  ScratchDir dir;
  FaceModelOptions o = tiny_options(72);
  o.age_classes = 3;
  FaceModel model(o);
  model.set_training(false);
  fs::create_directories(dir / "run");
  save_model((dir / "run" / "model-1.safetensors").string(), model, {{"arch", "tiny"}});
  dir.write("run/latest", "1\n");
  dir.write("run/config.json", R"({"arch": "tiny", "input_size": 32, "age_edges": [20, 40]})");
  const std::vector<int> ages{3, 19, 20, 33, 39, 40, 70, 25};
  std::vector<fs::path> files;
  for (size_t i = 0; i < ages.size(); ++i) {
    files.push_back(dir / "utk" / (std::to_string(ages[i]) + "_" + std::to_string(i % 2) + "_0_2017010" +
                                   std::to_string(i) + ".jpg.chip.png"));
    write_png(files.back(), pattern(kSize, kSize, uint32_t(700 + i)));
  }
  std::sort(files.begin(), files.end());
  Context ctx(Device::CPU);
  const Tensor logits = model.classify(ctx, Task::Age, normalised(read_images(files)));
  int correct = 0;
  for (size_t i = 0; i < files.size(); ++i) {
    const float* z = logits.data<float>() + 3 * i;
    const int predicted = int(std::max_element(z, z + 3) - z);
    const int age = std::stoi(files[i].filename().string());
    correct += predicted == (age < 20 ? 0 : age < 40 ? 1 : 2);
  }
  const Outcome run = cuface(dir, "eval-attr --model " + (dir / "run").string() + " --task age --images " +
                                      (dir / "utk").string() + " --truth utkface-age --report " + (dir / "r.json").string());
  ASSERT_EQ(run.status, 0) << run.err;
  const nlohmann::json report = nlohmann::json::parse(slurp(dir / "r.json"));
  EXPECT_EQ(report["samples"], 8);
  EXPECT_DOUBLE_EQ(report["overall_accuracy"].get<double>(), correct / 8.0);
  // The edges given as train takes them: the same bins; edges that do not rise are an error.
  const std::string with_edges = "eval-attr --model " + (dir / "run").string() + " --task age --images " +
                                 (dir / "utk").string() + " --truth utkface-age --age-edges ";
  ASSERT_EQ(cuface(dir, with_edges + "20,40 --report " + (dir / "r2.json").string()).status, 0);
  EXPECT_EQ(nlohmann::json::parse(slurp(dir / "r2.json"))["overall_accuracy"], report["overall_accuracy"]);
  const Outcome falling = cuface(dir, with_edges + "40,20 --report " + (dir / "r3.json").string());
  EXPECT_EQ(falling.status, 1);
  EXPECT_NE(falling.err.find("--age-edges must be increasing"), std::string::npos) << falling.err;
  EXPECT_FALSE(fs::exists(dir / "r3.json"));

  ASSERT_EQ(cuface(dir, "classify --model " + (dir / "run").string() + " --task age --images " + (dir / "utk").string() +
                            " --out " + (dir / "sorted").string())
                .status,
            0);
  const std::string csv = slurp(dir / "sorted" / "scores.csv");
  EXPECT_EQ(csv.substr(0, csv.find('\n')), "path,predicted,p_0-19,p_20-39,p_40+");
}

// LFW's male/female name lists as the truth for the model's gender head on real (grayscale) photos,
// centre-cropped and resized to the input size.
TEST(EvalAttrModel, LfwGenderListsOnRealPhotos) {
  const fs::path lfw = fs::path(CUFACE_SHARED_DATA) / "lfw";
  if (!fs::exists(lfw / "male_names.txt")) GTEST_SKIP() << "LFW not found under " << lfw << " (../shared/data)";
  ScratchDir dir;
  auto model = tiny_model(73);
  const std::string m = (dir / "m.safetensors").string();
  save_model(m, *model, {{"arch", "tiny"}});
  // The first three of each gender by name (names in both lists are left out by the reader).
  const eval::LfwGender lists = eval::read_lfw_gender(lfw / "male_names.txt", lfw / "female_names.txt");
  std::vector<fs::path> files;
  std::vector<int> truth;
  for (const char* gender : {"male", "female"}) {
    std::vector<std::string> names;
    for (const auto& [name, g] : lists.gender_of)
      if (g == gender) names.push_back(name);
    std::sort(names.begin(), names.end());
    for (size_t k = 0; k < 3; ++k) {
      files.push_back(lfw / "images" / names[k].substr(0, names[k].size() - 9) / names[k]);  // Name_0001.jpg -> Name/
      truth.push_back(std::string(gender) == "female");
    }
  }
  std::string listing;
  for (const fs::path& f : files) listing += f.string() + "\n";
  dir.write("list.txt", listing);
  std::vector<Image> crops;
  for (const fs::path& f : files) {
    const Image image = read_image(f);
    crops.push_back(warp_to_size(image, centre_crop_map(image.width, image.height, kSize), kSize));
  }
  Context ctx(Device::CPU);
  const Tensor logits = model->classify(ctx, Task::Gender, normalised(crops));
  int correct = 0;
  for (size_t i = 0; i < files.size(); ++i)
    correct += (logits.data<float>()[2 * i + 1] > logits.data<float>()[2 * i] ? 1 : 0) == truth[i];
  const Outcome run = cuface(dir, "eval-attr --model " + m + " --task gender --images " + (dir / "list.txt").string() +
                                      " --truth lfw-gender --lfw-names " + lfw.string() + " --input-size 32 --report " +
                                      (dir / "r.json").string());
  ASSERT_EQ(run.status, 0) << run.err;
  const nlohmann::json report = nlohmann::json::parse(slurp(dir / "r.json"));
  EXPECT_EQ(report["samples"], 6);
  EXPECT_DOUBLE_EQ(report["overall_accuracy"].get<double>(), correct / 6.0);
}

// --detect: an image without a face is reported by name and skipped (--strict: an error); a real
// face is found. Without dlib the flag is one clear error.
TEST(EmbedDetect, ImageWithoutAFaceIsSkippedByName) {
  ScratchDir dir;
  auto model = tiny_model(91);
  const std::string m = (dir / "m.safetensors").string();
  save_model(m, *model, {{"arch", "tiny"}});
  write_png(dir / "images" / "pattern.png", pattern(80, 80, 9));
  const fs::path lfw_face = fs::path(CUFACE_SHARED_DATA) / "lfw/images/Aaron_Peirsol/Aaron_Peirsol_0001.jpg";
  const bool with_face = fs::exists(lfw_face);
  if (with_face) fs::copy_file(lfw_face, dir / "images" / "face.jpg");
  const std::string args = "embed --model " + m + " --images " + (dir / "images").string() + " --detect --input-size 32";
  const Outcome run = cuface(dir, args + " --out " + (dir / "e.npy").string());
  if (!face_detection_available()) {
    EXPECT_EQ(run.status, 1);
    EXPECT_NE(run.err.find("dlib"), std::string::npos) << run.err;
    GTEST_SKIP() << "cuface was built without dlib: checked only that --detect says so";
  }
  if (!fs::exists(kDefaultLandmarkModel)) GTEST_SKIP() << kDefaultLandmarkModel << " is absent (install libdlib-data)";
  if (!with_face) GTEST_SKIP() << "LFW not found under ../shared/data: no real face to detect";
  ASSERT_EQ(run.status, 0) << run.err;
  EXPECT_NE(run.err.find("skipped " + (dir / "images" / "pattern.png").string() + ": no face found"), std::string::npos)
      << run.err;
  const eval::Embeddings e = eval::read_embeddings(dir / "e.npy");
  ASSERT_EQ(e.paths.size(), 1u);
  EXPECT_EQ(fs::path(e.paths[0]).filename(), "face.jpg");
  const Outcome strict = cuface(dir, args + " --strict --out " + (dir / "strict.npy").string());
  EXPECT_EQ(strict.status, 1);
  EXPECT_NE(strict.err.find("pattern.png': no face found"), std::string::npos) << strict.err;
}

TEST(EmbedLfw, AlignedRowsEqualTheModelOnCropsFromTheLandmarkFile) {
  const fs::path lfw = fs::path(CUFACE_SHARED_DATA) / "lfw";
  if (!fs::exists(lfw / "landmarks5.txt")) GTEST_SKIP() << "LFW not found under " << lfw << " (../shared/data)";
  ScratchDir dir;
  auto model = tiny_model(81);
  const std::string m = (dir / "m.safetensors").string();
  save_model(m, *model, {{"arch", "tiny"}});
  const std::vector<std::string> names{"Aaron_Peirsol/Aaron_Peirsol_0001.jpg", "Aaron_Peirsol/Aaron_Peirsol_0002.jpg",
                                       "Abdullah_Gul/Abdullah_Gul_0001.jpg"};
  std::string list;
  for (const std::string& n : names) list += (lfw / "images" / n).string() + "\n";
  dir.write("list.txt", list);
  const Outcome run = cuface(dir, "embed --model " + m + " --images " + (dir / "list.txt").string() + " --align " +
                                      (lfw / "landmarks5.txt").string() + " --input-size 32 --out " +
                                      (dir / "e.npy").string());
  ASSERT_EQ(run.status, 0) << run.err;

  const auto landmarks = read_landmarks((lfw / "landmarks5.txt").string());
  std::vector<Image> crops;
  for (const std::string& n : names) {
    Affine map;
    ASSERT_TRUE(alignment_map(landmarks.at(n), kSize, map));
    crops.push_back(warp_to_size(read_image(lfw / "images" / n), map, kSize));
  }
  Context ctx(Device::CPU);
  expect_rows_near(eval::read_npy(dir / "e.npy"), model->embed(ctx, normalised(crops)), 1e-5, "aligned LFW rows");
}

// --model --pack --sample: every pack image embedded by the model, pairs drawn from the pack's identity
// labels. Reference: `cuface embed` rows of the same images, put in pack order by each record's
// source path, sampled and evaluated here.
TEST(EvalFrModel, SampledPairsFromAPackEqualThoseFromEmbedRows) {
  ScratchDir dir;
  write_synthetic_faces((dir / "faces").string(), 8, 5, kSize, 3);
  PackOptions pack;
  pack.input = (dir / "faces").string();
  pack.format = "tree";
  pack.out = (dir / "faces_pack").string();
  pack.size = kSize;
  pack.encoding = Encoding::Raw;
  pack_images(pack);
  auto model = tiny_model(53);
  const std::string m = (dir / "m.safetensors").string();
  save_model(m, *model, {{"arch", "tiny"}});

  const Outcome sampled = cuface(dir, "eval-fr --model " + m + " --pack " + pack.out + " --sample 40 --repeat 2 --seed 9" +
                                          " --input-size 32 --device cpu --report " + (dir / "r.json").string());
  ASSERT_EQ(sampled.status, 0) << sampled.err;
  EXPECT_NE(sampled.out.find("embedded 40 pack images"), std::string::npos) << sampled.out;
  const nlohmann::json report = nlohmann::json::parse(slurp(dir / "r.json"));

  ASSERT_EQ(cuface(dir, "embed --model " + m + " --images " + pack.input + " --out " + (dir / "emb.npy").string() +
                            " --input-size 32 --device cpu")
                .status,
            0);
  const eval::Embeddings rows = eval::read_embeddings(dir / "emb.npy");
  const PackSet set({pack.out});
  ASSERT_EQ(set.size(), 40);
  std::vector<int> identity;
  Tensor ordered = Tensor::empty({set.size(), rows.matrix.size(1)});
  for (int64_t i = 0; i < set.size(); ++i) {
    const RecordView record = set.record(i);
    identity.push_back(record.labels.identity);
    const fs::path source = fs::path(pack.input) / std::string(record.source);
    const auto row = std::find(rows.paths.begin(), rows.paths.end(), source.string());
    ASSERT_NE(row, rows.paths.end()) << source;
    ordered.slice(i, i + 1).copy_from(rows.matrix.slice(row - rows.paths.begin(), row - rows.paths.begin() + 1));
  }
  for (int r = 0; r < 2; ++r) {
    const eval::SampledPairs pairs = eval::sample_pairs(identity, 40, 9, uint64_t(r));
    const eval::VerificationResult expected = eval::evaluate_verification({ordered, pairs.rows, pairs.same}, 10);
    const nlohmann::json& got = report["repeats"][size_t(r)];
    EXPECT_NEAR(got["accuracy_mean"].get<double>(), expected.kfold.accuracy_mean, 1e-6) << r;
    EXPECT_NEAR(got["gap"].get<double>(), expected.gap, 1e-4) << r;
    EXPECT_NEAR(got["auc"].get<double>(), expected.auc, 1e-6) << r;
  }
  // Without --pack the command says what it needs.
  const Outcome missing = cuface(dir, "eval-fr --model " + m + " --sample 40 --device cpu");
  EXPECT_NE(missing.status, 0);
  EXPECT_NE(missing.err.find("--pack"), std::string::npos) << missing.err;
}

// A Gender-only run has no FR head, and its embedding layer never learned anything (--init loads
// backbones alone): embed and verify refuse it; its gender head is still usable.
TEST(Embed, ModelWithoutAnFrHeadIsRefusedForEmbeddings) {
  ScratchDir dir;
  const std::vector<fs::path> files = write_images(dir, 1);
  FaceModelOptions o = tiny_options(81);
  o.identities = 0;
  o.age_classes = 0;
  FaceModel model(o);
  const std::string m = (dir / "gender.safetensors").string();
  save_model(m, model, {{"arch", "tiny"}});
  const Outcome embed = cuface(dir, "embed --model " + m + " --images " + (dir / "images").string() + " --out " +
                                        (dir / "e.npy").string() + " --input-size 32");
  EXPECT_EQ(embed.status, 1) << embed.out;
  EXPECT_NE(embed.err.find("has no FR head (fr.weight): it comes from a Gender or Age run"), std::string::npos)
      << embed.err;
  EXPECT_FALSE(fs::exists(dir / "e.npy"));
  const Outcome verify = cuface(dir, "verify --model " + m + " " + files[0].string() + " " + files[1].string() +
                                         " --input-size 32");
  EXPECT_EQ(verify.status, 1) << verify.out;
  EXPECT_NE(verify.err.find("has no FR head"), std::string::npos) << verify.err;
  const Outcome classify = cuface(dir, "classify --model " + m + " --task gender --images " + (dir / "images").string() +
                                           " --out " + (dir / "sorted").string() + " --input-size 32");
  EXPECT_EQ(classify.status, 0) << classify.err;
}

// verify's default threshold comes from the run's last FR validation, unless that validation is at
// chance level or its best threshold sits on the edge of the searched grid: then verify says so and
// uses the default cosine 0.3.
TEST(Verify, UnreliableValidationThresholdIsNotTheDefault) {
  ScratchDir dir;
  const std::vector<fs::path> files = write_images(dir, 1);
  auto model = tiny_model(82);
  fs::create_directories(dir / "run");
  save_model((dir / "run" / "model-2.safetensors").string(), *model, {{"arch", "tiny"}});
  dir.write("run/latest", "2\n");
  dir.write("run/config.json", R"({"arch": "tiny", "input_size": 32, "task": "FR"})");
  const std::string command = "verify --model " + (dir / "run").string() + " " + files[0].string() + " " + files[1].string();
  auto validation = [&](double threshold, double accuracy) {
    dir.write("run/valid.csv", "step,task,figure,value\n1,FR,best_threshold,0.7\n1,FR,best_accuracy,0.99\n"
                               "2,FR,best_threshold," + std::to_string(threshold) + "\n2,FR,best_accuracy," +
                               std::to_string(accuracy) + "\n");
    return cuface(dir, command);
  };
  Outcome run = validation(1.0, 0.9);  // reliable: cosine 1 - 1/2
  ASSERT_EQ(run.status, 0) << run.err;
  EXPECT_NE(run.out.find("threshold 0.5000 from the run's validation at step 2 (distance 1.0000"), std::string::npos)
      << run.out;
  run = validation(1.8, 0.9);  // the grid's last threshold
  ASSERT_EQ(run.status, 0) << run.err;
  EXPECT_NE(run.err.find("the threshold is unreliable, it lies on the edge of the searched distances 0.4 to 1.8"),
            std::string::npos)
      << run.err;
  EXPECT_NE(run.out.find("threshold 0.3000 from the default (the run's validation threshold is unreliable"),
            std::string::npos)
      << run.out;
  run = validation(1.1, 0.51);  // chance level
  ASSERT_EQ(run.status, 0) << run.err;
  EXPECT_NE(run.err.find("the threshold is unreliable, its accuracy is below 0.6, near chance (0.5)"), std::string::npos)
      << run.err;
  EXPECT_NE(run.out.find("threshold 0.3000 from the default"), std::string::npos) << run.out;
}

// embed refuses to replace an earlier output (the .npy or its .txt) unless --force.
TEST(Embed, ExistingOutputIsRefusedUnlessForced) {
  ScratchDir dir;
  write_images(dir, 1);
  auto model = tiny_model(83);
  const std::string m = (dir / "m.safetensors").string();
  save_model(m, *model, {{"arch", "tiny"}});
  const std::string command = "embed --model " + m + " --images " + (dir / "images").string() + " --input-size 32 --out ";
  ASSERT_EQ(cuface(dir, command + (dir / "e.npy").string()).status, 0);
  const std::string before = slurp(dir / "e.npy");
  Outcome again = cuface(dir, command + (dir / "e.npy").string());
  EXPECT_EQ(again.status, 1);
  EXPECT_NE(again.err.find("--out " + (dir / "e.npy").string() + ": " + (dir / "e.npy").string() +
                           " already exists (--force replaces it)"),
            std::string::npos)
      << again.err;
  EXPECT_EQ(again.err.find("embedding "), std::string::npos) << "refused before the work: " << again.err;
  EXPECT_EQ(slurp(dir / "e.npy"), before);
  dir.write("only.txt", "a list left by an earlier run\n");
  again = cuface(dir, command + (dir / "only.npy").string());
  EXPECT_EQ(again.status, 1);
  EXPECT_NE(again.err.find((dir / "only.txt").string() + " already exists"), std::string::npos) << again.err;
  EXPECT_EQ(cuface(dir, command + (dir / "e.npy").string() + " --force").status, 0);
}

// An image that cannot be decoded (text, a cut-off JPEG, a PNG with a damaged CRC) is skipped with
// its reason and counted, as pack does; --strict stops at the first one. Before, embed stopped at
// the first with an error, and stb decoded the damaged ones.
TEST(Embed, UndecodableImagesAreSkippedAndCounted) {
  ScratchDir dir;
  const std::vector<fs::path> files = write_images(dir, 1);  // ann_1.png, bob_1.png
  auto model = tiny_model(84);
  const std::string m = (dir / "m.safetensors").string();
  save_model(m, *model, {{"arch", "tiny"}});
  dir.write("images/cy/text.png", "not an image");
  std::vector<uint8_t> jpeg = encode_jpeg(pattern(kSize, kSize, 5), 90);
  jpeg.resize(jpeg.size() - 40);
  testing::write_bytes(dir / "images" / "cy" / "cut.jpg", jpeg);
  std::vector<uint8_t> png = encode_png(pattern(kSize, kSize, 6));
  png[png.size() / 2] ^= 0x10;  // inside IDAT: only its CRC tells
  testing::write_bytes(dir / "images" / "cy" / "flipped.png", png);

  const std::string images = " --images " + (dir / "images").string() + " --input-size 32";
  const Outcome run = cuface(dir, "embed --model " + m + images + " --out " + (dir / "e.npy").string());
  ASSERT_EQ(run.status, 0) << run.err;
  EXPECT_NE(run.out.find("embed: 2 images"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find(", 3 skipped,"), std::string::npos) << run.out;
  for (const std::string& expected : {"skipped " + (dir / "images/cy/text.png").string() + ": not a decodable image",
                                     "skipped " + (dir / "images/cy/cut.jpg").string() + ": corrupt JPEG",
                                     "skipped " + (dir / "images/cy/flipped.png").string() + ": corrupt PNG"})
    EXPECT_NE(run.err.find(expected), std::string::npos) << expected << "\n" << run.err;
  EXPECT_EQ(eval::read_embeddings(dir / "e.npy").paths,
            std::vector<std::string>({files[0].string(), files[1].string()}));

  const Outcome strict = cuface(dir, "embed --model " + m + images + " --out " + (dir / "s.npy").string() + " --strict");
  EXPECT_EQ(strict.status, 1);
  EXPECT_NE(strict.err.find("cut.jpg': corrupt JPEG"), std::string::npos) << strict.err;  // the first in order
  EXPECT_FALSE(fs::exists(dir / "s.npy"));

  const Outcome classify = cuface(dir, "classify --model " + m + " --task gender" + images + " --out " +
                                           (dir / "sorted").string());
  ASSERT_EQ(classify.status, 0) << classify.err;
  EXPECT_NE(classify.out.find("classify: 2 of 5 images"), std::string::npos) << classify.out;
  EXPECT_NE(classify.out.find(", 3 skipped,"), std::string::npos) << classify.out;
}

// eval-attr --truth folder on images that are not in class folders: an error, not 0% accuracy.
TEST(EvalAttrModel, FolderTruthWithoutClassFoldersIsAnError) {
  ScratchDir dir;
  auto model = tiny_model(85);
  const std::string m = (dir / "m.safetensors").string();
  save_model(m, *model, {{"arch", "tiny"}});
  for (int i = 0; i < 4; ++i) write_png(dir / "flat" / (std::to_string(i) + ".png"), pattern(kSize, kSize, uint32_t(i)));
  const Outcome run = cuface(dir, "eval-attr --model " + m + " --task gender --images " + (dir / "flat").string() +
                                      " --truth folder --input-size 32");
  EXPECT_EQ(run.status, 1) << run.out;
  EXPECT_NE(run.err.find("--truth folder: '" + (dir / "flat" / "0.png").string() + "' lies directly in --images " +
                         (dir / "flat").string() + ", not in a class folder"),
            std::string::npos)
      << run.err;
  EXPECT_EQ(run.out.find("accuracy"), std::string::npos) << run.out;
}

// Messages name the user's flag or file, never our source files; a flag given twice says so; a
// non-finite number is refused wherever a number is taken.
TEST(CommandLine, ErrorsNameFlagsNotSourceFilesAndRefuseRepeatsAndNonFiniteNumbers) {
  ScratchDir dir;
  const std::vector<fs::path> files = write_images(dir, 1);
  auto model = tiny_model(86);
  const std::string m = (dir / "m.safetensors").string();
  save_model(m, *model, {{"arch", "tiny"}});

  Outcome run = cuface(dir, "embed --model " + (dir / "none.safetensors").string() + " --images " +
                                (dir / "images").string() + " --out " + (dir / "e.npy").string());
  EXPECT_EQ(run.status, 1);
  EXPECT_NE(run.err.find("--model: '" + (dir / "none.safetensors").string() + "' does not exist"), std::string::npos)
      << run.err;
  EXPECT_EQ(run.err.find(".cpp"), std::string::npos) << run.err;
  EXPECT_EQ(run.err.find(CUFACE_SOURCE_DIR), std::string::npos) << run.err;

  run = cuface(dir, "pack " + (dir / "images").string() + " --out " + (dir / "p").string() + " --size 64 --size 32");
  EXPECT_EQ(run.status, 2);
  EXPECT_NE(run.err.find("cuface: --size is given 2 times; give it once"), std::string::npos) << run.err;

  const std::string verify = "verify --model " + m + " " + files[0].string() + " " + files[1].string() + " --input-size 32";
  for (const char* value : {"nan", "NaN"}) {  // a NaN passed the range check: the run's threshold was used
    run = cuface(dir, verify + " --threshold " + value);
    EXPECT_EQ(run.status, 2) << value << "\n" << run.out;
    EXPECT_NE(run.err.find("--threshold: expected a finite number, got '" + std::string(value) + "'"), std::string::npos)
        << run.err;
  }
  for (const char* value : {"inf", "-inf"}) {  // the range check names these
    run = cuface(dir, verify + " --threshold " + value);
    EXPECT_EQ(run.status, 2) << value << "\n" << run.out;
    EXPECT_NE(run.err.find("--threshold: Value " + std::string(value) + " not in range"), std::string::npos) << run.err;
  }
  run = cuface(dir, "embed --model " + m + " --images " + (dir / "images").string() + " --out " +
                        (dir / "e.npy").string() + " --detect --pad nan");
  EXPECT_EQ(run.status, 2);
  EXPECT_NE(run.err.find("--pad: expected a finite number, got 'nan'"), std::string::npos) << run.err;
  EXPECT_EQ(cuface(dir, verify + " --threshold 0.25").status, 0);
}

}  // namespace
}  // namespace cuface
