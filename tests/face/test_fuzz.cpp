// Fuzz-style robustness: truncated and bit-flipped images, shards and RecordIO files must give an
// error (or a harmless success), never a crash; and damage to a shard's checked bytes never goes
// unnoticed. Seeded, so a failure reproduces.
#include <gtest/gtest.h>

#include <cstdlib>
#include <random>

#include "data.h"
#include "engine/error.h"
#include "face/pack/recordio.h"
#include "face/pack/sources.h"
#include "face/pack/verify.h"
#include "recordio_writer.h"

namespace cuface {
namespace {

using testing::shared_data;
using testing::ScratchDir;

// CUFACE_FUZZ_SCALE=N multiplies the iteration counts, for long runs under ASan/UBSan:
//   CUFACE_FUZZ_SCALE=100 ./build-asan/tests/test_face --gtest_filter='Fuzz*'
int scaled(int iterations) {
  const char* scale = std::getenv("CUFACE_FUZZ_SCALE");
  return iterations * (scale ? std::max(1, std::atoi(scale)) : 1);
}

// Decodes `bytes` cut at many lengths and with 1-3 flipped bits at many places.
void fuzz_decoder(const std::vector<uint8_t>& bytes, uint64_t seed, int flips) {
  flips = scaled(flips);
  Image image;
  std::string error;
  ASSERT_TRUE(decode_image(bytes.data(), bytes.size(), image, error)) << "the intact file must decode: " << error;
  const size_t step = std::max<size_t>(1, bytes.size() / 40);
  for (size_t keep = 0; keep < bytes.size(); keep += step) {
    if (decode_image(bytes.data(), keep, image, error)) {
      ASSERT_GT(image.width, 0);  // stb fills a cut-off JPEG's missing blocks
      ASSERT_EQ(image.pixels.size(), size_t(image.width) * image.height * 3);
    }
  }
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> mutated;
  for (int i = 0; i < flips; ++i) {
    mutated = bytes;
    for (int k = 0, n = 1 + int(rng() % 3); k < n; ++k) mutated[rng() % mutated.size()] ^= uint8_t(1u << (rng() % 8));
    if (decode_image(mutated.data(), mutated.size(), image, error))
      ASSERT_EQ(image.pixels.size(), size_t(image.width) * image.height * 3);
    else
      ASSERT_FALSE(error.empty());
  }
}

TEST(Fuzz, DecoderSurvivesDamagedFilesOfEveryFormat) {
  fuzz_decoder(read_file(testing::fixture_path("image/synthetic_baseline.jpg")), 1, 300);
  fuzz_decoder(read_file(testing::fixture_path("image/synthetic_progressive.jpg")), 2, 300);
  fuzz_decoder(read_file(testing::fixture_path("image/synthetic.ppm")), 3, 100);
  Image image;
  std::string error;
  const std::vector<uint8_t> ppm = read_file(testing::fixture_path("image/synthetic.ppm"));
  ASSERT_TRUE(decode_image(ppm.data(), ppm.size(), image, error));
  fuzz_decoder(encode_png(image), 4, 200);
}

TEST(Fuzz, DecoderSurvivesDamagedSharedDataFiles) {
  CUFACE_REQUIRE_SHARED_DATA("lfw");
  fuzz_decoder(read_file(shared_data("lfw/images/Aaron_Eckhart/Aaron_Eckhart_0001.jpg")), 5, 150);
  fuzz_decoder(read_file(shared_data("utkface/100_0_0_20170112213500903.jpg.chip.jpg")), 6, 150);
  fuzz_decoder(read_file(shared_data("yale/subject01.happy")), 7, 100);
  fuzz_decoder(read_file(shared_data("orl/s1/1.pgm")), 8, 100);
}

// Bytes a shard's CRCs and framing cover: header, each record's prefix and body, the index. The
// rest is padding between records, which holds no information.
std::vector<bool> covered_bytes(const std::string& path, size_t size) {
  std::vector<bool> covered(size, false);
  const Shard shard(path);
  for (size_t i = 0; i < kShardHeaderBytes; ++i) covered[i] = true;
  const uint8_t* base = shard.record(0).data - (kShardHeaderBytes + kRecordPrefixBytes + kRecordFixedBytes +
                                                shard.record(0).source.size());
  for (int64_t r = 0; r < shard.size(); ++r) {
    const RecordView v = shard.record(r);
    const size_t end = size_t(v.data - base) + v.size;
    const size_t begin = size_t(v.source.data() - reinterpret_cast<const char*>(base)) - kRecordFixedBytes - kRecordPrefixBytes;
    for (size_t i = begin; i < end; ++i) covered[i] = true;
  }
  const size_t index = size - size_t(shard.size()) * 8 - 4;
  for (size_t i = index; i < size; ++i) covered[i] = true;
  return covered;
}

TEST(Fuzz, DamagedShardsAreRejectedOrReportedNeverCrash) {
  ScratchDir dir;
  const std::string path = shard_path(dir / "p", 0, 1);
  {
    ShardWriter writer(path, 0, 1);
    const std::vector<uint8_t> jpeg = read_file(testing::fixture_path("image/synthetic_baseline.jpg"));
    const Image raw = testing::pattern_image(3, 8);
    const std::vector<uint8_t> png = encode_png(raw);
    writer.add({0, 1, 30}, "a.jpg", Encoding::Jpeg, 72, 56, 3, jpeg.data(), jpeg.size());
    writer.add({1, 0, 31}, "b", Encoding::Raw, 8, 8, 3, raw.pixels.data(), raw.pixels.size());
    writer.add({2, -1, -1}, "c/c.png", Encoding::Png, 8, 8, 3, png.data(), png.size());
    writer.add({1, 0, 31}, "dd", Encoding::Raw, 8, 8, 3, raw.pixels.data(), raw.pixels.size());
    writer.finish();
  }
  const std::vector<uint8_t> bytes = read_file(path);
  const std::vector<bool> covered = covered_bytes(path, bytes.size());
  testing::write_sidecar(dir / "p", 4, 3);
  ASSERT_EQ(verify_pack(Pack(dir / "p"), 1).first_bad, -1);

  std::mt19937_64 rng(11);
  int detected = 0, mutations = 0;
  for (int iteration = 0; iteration < scaled(400); ++iteration) {
    std::vector<uint8_t> mutated = bytes;
    bool touches_covered = false;
    if (iteration % 8 == 0) {
      mutated.resize(rng() % bytes.size());  // truncation
      touches_covered = true;
    } else {
      for (int k = 0, n = 1 + int(rng() % 3); k < n; ++k) {
        const size_t at = rng() % mutated.size();
        mutated[at] ^= uint8_t(1u << (rng() % 8));
        touches_covered = touches_covered || covered[at];
      }
    }
    if (!touches_covered) continue;
    ++mutations;
    testing::write_bytes(path, mutated);
    bool noticed = false;
    try {
      const Pack pack(dir / "p");
      for (int64_t i = 0; i < pack.size(); ++i) {
        std::string error;
        if (!verify_record(pack, i, error)) {
          noticed = true;
          EXPECT_FALSE(error.empty());
        }
        try {
          (void)pack.record(i);
        } catch (const Error&) {
          noticed = true;
        }
      }
    } catch (const Error&) {
      noticed = true;  // header, size or index rejected at open
    }
    detected += noticed;
    EXPECT_TRUE(noticed) << "iteration " << iteration << ": damage to checked bytes went unnoticed";
  }
  EXPECT_GT(mutations, 300);
  EXPECT_EQ(detected, mutations);
}

TEST(Fuzz, DamagedRecordIOFilesGiveErrors) {
  ScratchDir dir;
  const std::vector<uint8_t> jpeg = read_file(testing::fixture_path("image/synthetic_baseline.jpg"));
  testing::RecordIOWriter writer;
  std::vector<uint64_t> offsets;
  for (uint64_t id : {uint64_t(1), uint64_t(kRecordIOMagic), uint64_t(3)})  // the second one is split in parts
    offsets.push_back(writer.write(testing::image_record_payload(0, float(id % 5), {}, id, jpeg)));
  const std::vector<uint8_t> bytes = writer.bytes();
  std::mt19937_64 rng(13);
  for (int iteration = 0; iteration < scaled(300); ++iteration) {
    std::vector<uint8_t> mutated = bytes;
    if (iteration % 5 == 0) mutated.resize(1 + rng() % (bytes.size() - 1));
    else
      for (int k = 0, n = 1 + int(rng() % 3); k < n; ++k) mutated[rng() % mutated.size()] ^= uint8_t(1u << (rng() % 8));
    testing::write_bytes(dir / "train.rec", mutated);
    const RecordIOFile file(dir / "train.rec");
    for (uint64_t offset : offsets) {
      std::vector<uint8_t> payload;
      std::string error;
      ImageRecord record;
      if (file.read(offset, payload, error) && parse_image_record(payload, record, error)) {
        Image image;
        decode_image(payload.data() + record.image_offset, payload.size() - record.image_offset, image, error);
      } else {
        ASSERT_FALSE(error.empty());
      }
    }
  }
}

}  // namespace
}  // namespace cuface
