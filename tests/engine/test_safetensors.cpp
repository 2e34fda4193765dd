#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "common/backends.h"
#include "engine/safetensors.h"
#include "common/source_dir.h"

namespace cuface {
namespace {

std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "cuface_safetensors_" + std::to_string(::getpid()) + "_" + name;
}

// A tensor of the given dtype filled with random bytes.
Tensor random_bytes(const Shape& shape, DType dtype, uint32_t seed) {
  Tensor t = Tensor::empty(shape, dtype);
  std::mt19937 rng(seed);
  auto* p = static_cast<uint8_t*>(t.raw());
  for (size_t i = 0; i < t.bytes(); ++i) p[i] = uint8_t(rng());
  return t;
}

void expect_same_tensor(const Tensor& a, const Tensor& b, const std::string& name) {
  EXPECT_EQ(a.dtype(), b.dtype()) << name;
  EXPECT_EQ(a.shape(), b.shape()) << name;
  ASSERT_EQ(a.bytes(), b.bytes()) << name;
  EXPECT_EQ(std::memcmp(a.raw(), b.raw(), a.bytes()), 0) << name;
}

TEST(Safetensors, RoundTripsEveryDTypeRankAndMetadata) {
  const std::vector<std::pair<std::string, Tensor>> tensors = {
      {"conv.weight", random_bytes({4, 3, 3, 2}, DType::F32, 1)},
      {"bn.bias", random_bytes({5}, DType::BF16, 2)},
      {"fc.weight", random_bytes({3, 7}, DType::F16, 3)},
      {"image", random_bytes({2, 5, 3}, DType::U8, 4)},  // odd byte count: the next tensor is unaligned
      {"labels", random_bytes({9}, DType::I32, 5)},
      {"step", random_bytes({}, DType::I32, 6)},
      {"nothing", Tensor::empty({0, 4}, DType::F32)},
      {"zero.rows", Tensor::empty({3, 0}, DType::BF16)},
  };
  const std::map<std::string, std::string> metadata = {{"format", "cuface"}, {"lr", "0.001"}, {"empty", ""}};
  const std::string path = temp_path("roundtrip.safetensors");
  save_safetensors(path, tensors, metadata);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));

  SafetensorsFile file = load_safetensors(path);
  EXPECT_EQ(file.metadata, metadata);
  ASSERT_EQ(file.tensors.size(), tensors.size());
  for (const auto& [name, tensor] : tensors) {
    ASSERT_TRUE(file.tensors.count(name)) << name;
    const Tensor& loaded = file.tensors.at(name);
    EXPECT_EQ(loaded.device(), Device::CPU);
    expect_same_tensor(loaded, tensor, name);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(loaded.raw()) % 64, 0u) << name << " is not aligned for vector loads";
  }
  std::filesystem::remove(path);
}

TEST(Safetensors, EmptyFileAndOverwrite) {
  const std::string path = temp_path("overwrite.safetensors");
  save_safetensors(path, {});
  SafetensorsFile empty = load_safetensors(path);
  EXPECT_TRUE(empty.tensors.empty());
  EXPECT_TRUE(empty.metadata.empty());

  Tensor t = random_bytes({2}, DType::F32, 7);
  save_safetensors(path, {{"t", t}});
  expect_same_tensor(load_safetensors(path).tensors.at("t"), t, "t");
  std::filesystem::remove(path);
}

TEST(Safetensors, SavesCudaTensorsThroughTheHost) {
  CUFACE_REQUIRE_GPU();
  Tensor host = random_bytes({3, 4}, DType::BF16, 9);
  const std::string path = temp_path("cuda.safetensors");
  save_safetensors(path, {{"on_gpu", host.to(Device::CUDA)}});
  expect_same_tensor(load_safetensors(path).tensors.at("on_gpu"), host, "on_gpu");
  std::filesystem::remove(path);
}

TEST(Safetensors, SaveRejectsRepeatedOrReservedNames) {
  const std::string path = temp_path("bad_names.safetensors");
  Tensor t = Tensor::zeros({1});
  EXPECT_THROW(save_safetensors(path, {{"a", t}, {"a", t}}), Error);
  EXPECT_THROW(save_safetensors(path, {{"__metadata__", t}}), Error);
  EXPECT_THROW(save_safetensors(path, {{"undefined", Tensor()}}), Error);
  EXPECT_FALSE(std::filesystem::exists(path));
}

// The fixture comes from scripts/make_safetensors_fixture.py (its docstring lists the values).
TEST(Safetensors, ReadsTheFileWrittenByPython) {
  const std::string path = cuface::testing::fixture_path("safetensors_small.safetensors");
  SafetensorsFile file = load_safetensors(path);
  EXPECT_EQ(file.metadata.at("producer"), "scripts/make_safetensors_fixture.py");
  EXPECT_EQ(file.metadata.at("note"), "unicode \u2713");
  ASSERT_EQ(file.tensors.size(), 7u);

  const Tensor& weights = file.tensors.at("weights");
  ASSERT_EQ(weights.shape(), (Shape{2, 3}));
  for (int i = 0; i < 6; ++i) EXPECT_EQ(weights.data<float>()[i], float(M_PI * (i - 2))) << i;

  const Tensor& half = file.tensors.at("half");
  ASSERT_EQ(half.shape(), (Shape{4}));
  const double half_values[] = {0.1, -2.5, 65504.0, 6e-8};
  for (int i = 0; i < 4; ++i) EXPECT_EQ(half.data<f16>()[i].bits, to_f16(float(half_values[i])).bits) << i;

  const Tensor& brain = file.tensors.at("brain");
  ASSERT_EQ(brain.shape(), (Shape{1, 2, 2, 1}));
  const float brain_values[] = {1.0f, -0.1f, 3.0e38f, 1e-3f};
  for (int i = 0; i < 4; ++i) EXPECT_EQ(brain.data<bf16>()[i].bits, to_bf16(brain_values[i]).bits) << i;

  const Tensor& labels = file.tensors.at("labels");
  const int32_t label_values[] = {INT32_MIN, -1, 0, 7, INT32_MAX};
  ASSERT_EQ(labels.shape(), (Shape{5}));
  for (int i = 0; i < 5; ++i) EXPECT_EQ(labels.data<int32_t>()[i], label_values[i]);

  const Tensor& pixels = file.tensors.at("pixels");
  ASSERT_EQ(pixels.shape(), (Shape{2, 2, 3}));
  for (int i = 0; i < 12; ++i) EXPECT_EQ(pixels.data<uint8_t>()[i], (37 * i) % 256);

  const Tensor& scalar = file.tensors.at("scalar");
  EXPECT_EQ(scalar.rank(), 0);
  EXPECT_EQ(scalar.data<float>()[0], 42.5f);

  EXPECT_EQ(file.tensors.at("empty").shape(), (Shape{0, 3}));
}

// ---- corrupt files ---------------------------------------------------------------------------

// Writes `header_length` (default: the header's size), the header text and `data_bytes` zero bytes.
std::string write_raw(const std::string& name, const std::string& header, size_t data_bytes,
                      uint64_t header_length = UINT64_MAX) {
  const std::string path = temp_path(name);
  std::ofstream out(path, std::ios::binary);
  const uint64_t length = header_length == UINT64_MAX ? header.size() : header_length;
  out.write(reinterpret_cast<const char*>(&length), 8);
  out << header << std::string(data_bytes, '\0');
  return path;
}

// Loading fails with a message that names the file and contains `phrase`.
void expect_rejected(const std::string& path, const std::string& phrase) {
  try {
    load_safetensors(path);
    ADD_FAILURE() << path << " was accepted; expected an error about: " << phrase;
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(path), std::string::npos) << message;
    EXPECT_NE(message.find(phrase), std::string::npos) << "expected '" << phrase << "' in: " << message;
  }
  std::filesystem::remove(path);
}

TEST(Safetensors, RejectsTruncatedFiles) {
  const std::string path = temp_path("truncated.safetensors");
  save_safetensors(path, {{"a", random_bytes({4, 4}, DType::F32, 8)}});
  const auto full = std::filesystem::file_size(path);
  std::filesystem::resize_file(path, full - 1);
  expect_rejected(path, "lies beyond the data section");

  save_safetensors(path, {{"a", random_bytes({4, 4}, DType::F32, 8)}});
  std::filesystem::resize_file(path, 20);  // inside the header
  expect_rejected(path, "runs past the end of the file");

  save_safetensors(path, {{"a", random_bytes({4, 4}, DType::F32, 8)}});
  std::filesystem::resize_file(path, 5);
  expect_rejected(path, "too few for the 8-byte header length");

  expect_rejected(temp_path("missing.safetensors"), "cannot open");
}

TEST(Safetensors, RejectsBadHeaders) {
  const std::string good = R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})";
  expect_rejected(write_raw("length.st", good, 8, uint64_t(1) << 40), "runs past the end of the file");
  expect_rejected(write_raw("json.st", "{\"a\": {\"dtype\": ", 8), "not valid JSON");
  expect_rejected(write_raw("array.st", "[1, 2]", 0), "not a JSON object");
  expect_rejected(write_raw("dtype.st", R"({"a": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}})", 8),
                  "has dtype \"F64\"");
  expect_rejected(write_raw("unknown.st", R"({"a": {"dtype": "Q7", "shape": [1], "data_offsets": [0, 1]}})", 1),
                  "has dtype \"Q7\"");
  expect_rejected(write_raw("field.st", R"({"a": {"dtype": "F32", "shape": [2]}})", 8),
                  "has no \"data_offsets\" field");
  expect_rejected(write_raw("shape.st", R"({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})", 8),
                  "not a non-negative integer");
  expect_rejected(
      write_raw("rank.st", R"({"a": {"dtype": "U8", "shape": [1, 1, 1, 1, 2], "data_offsets": [0, 2]}})", 2),
      "has 5 dimensions; cuface tensors have at most 4");
  expect_rejected(write_raw("twice.st", good.substr(0, good.size() - 1) + R"(, "a": {"dtype": "F32", "shape": [2],)" +
                                            R"( "data_offsets": [0, 8]}})",
                            8),
                  "names 'a' twice");
  expect_rejected(write_raw("meta.st", R"({"__metadata__": {"epoch": 3}})", 0), "metadata 'epoch' is not a string");
}

TEST(Safetensors, RejectsOffsetsThatDoNotTileTheData) {
  expect_rejected(write_raw("size.st", R"({"a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 20]}})", 20),
                  "needs 24 bytes but data_offsets [0,20] hold 20");
  expect_rejected(write_raw("reversed.st", R"({"a": {"dtype": "F32", "shape": [0], "data_offsets": [8, 0]}})", 8),
                  "end before they begin");
  expect_rejected(write_raw("range.st", R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})", 4),
                  "lies beyond the data section");
  expect_rejected(write_raw("overlap.st",
                            R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},)"
                            R"( "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                            12),
                  "overlaps tensor 'a'");
  expect_rejected(write_raw("gap.st",
                            R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},)"
                            R"( "b": {"dtype": "F32", "shape": [2], "data_offsets": [12, 20]}})",
                            20),
                  "4 unused bytes before tensor 'b'");
  expect_rejected(write_raw("tail.st", R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})", 9),
                  "1 bytes after the last tensor");
}

// PyTorch state dicts hold BatchNorm's num_batches_tracked as an I64 scalar: read into I32.
TEST(Safetensors, ReadsI64IntoI32AndRejectsValuesBeyond32Bits) {
  const std::string header = R"({"n": {"dtype": "I64", "shape": [2], "data_offsets": [0, 16]}})";
  auto write_values = [&](const std::string& name, int64_t a, int64_t b) {
    const std::string path = temp_path(name);
    std::ofstream out(path, std::ios::binary);
    const uint64_t length = header.size();
    out.write(reinterpret_cast<const char*>(&length), 8);
    out << header;
    out.write(reinterpret_cast<const char*>(&a), 8);
    out.write(reinterpret_cast<const char*>(&b), 8);
    return path;
  };
  const std::string good = write_values("i64.st", 7, -3);
  SafetensorsFile file = load_safetensors(good);
  const Tensor& n = file.tensors.at("n");
  ASSERT_EQ(n.dtype(), DType::I32);
  EXPECT_EQ(n.data<int32_t>()[0], 7);
  EXPECT_EQ(n.data<int32_t>()[1], -3);
  std::filesystem::remove(good);
  expect_rejected(write_values("i64big.st", 1, int64_t(1) << 40), "beyond 32 bits");
}

}  // namespace
}  // namespace cuface
