// Fuzz-style robustness: truncated and bit-flipped images, shards and RecordIO files must give an
// error (or a harmless success), never a crash; damage to a shard's checked bytes never goes
// unnoticed; JPEG and PNG damage is refused, not decoded as if the file were fine. The program itself
// runs on damaged and crafted shards and images under a time and memory bound. Seeded, so a failure
// reproduces.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <random>

#include "cuface_program.h"
#include "data.h"
#include "engine/error.h"
#include "face/pack/crc32.h"
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

// Where a JPEG's image data ends: just past its last EOI marker (bytes after it are not the image's).
size_t jpeg_end(const std::vector<uint8_t>& bytes) {
  for (size_t i = bytes.size(); i >= 2; --i)
    if (bytes[i - 2] == 0xFF && bytes[i - 1] == 0xD9) return i;
  return bytes.size();
}

// Decodes `bytes` cut at many lengths and with 1-3 flipped bits at many places. A JPEG cut before
// its EOI, or a PNG cut anywhere, must be refused; a PNG with any flipped bit too (every PNG byte
// is under a chunk CRC or is the signature).
void fuzz_decoder(const std::vector<uint8_t>& bytes, uint64_t seed, int flips) {
  flips = scaled(flips);
  Image image;
  std::string error;
  ASSERT_TRUE(decode_image(bytes.data(), bytes.size(), image, error)) << "the intact file must decode: " << error;
  Encoding encoding = Encoding::Raw;
  const bool jpeg = sniff_encoding(bytes.data(), bytes.size(), encoding) && encoding == Encoding::Jpeg;
  const bool png = encoding == Encoding::Png;
  const size_t image_end = jpeg ? jpeg_end(bytes) : bytes.size();
  const size_t step = std::max<size_t>(1, bytes.size() / 40);
  for (size_t keep = 0; keep < bytes.size(); keep += step) {
    const bool decoded = decode_image(bytes.data(), keep, image, error);
    if ((jpeg || png) && keep < image_end) {
      EXPECT_FALSE(decoded) << "a file cut to " << keep << " of " << bytes.size() << " bytes decoded";
    }
    if (decoded) {
      ASSERT_EQ(image.pixels.size(), size_t(image.width) * image.height * 3);
    }
  }
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> mutated;
  for (int i = 0; i < flips; ++i) {
    mutated = bytes;
    for (int k = 0, n = 1 + int(rng() % 3); k < n; ++k) mutated[rng() % mutated.size()] ^= uint8_t(1u << (rng() % 8));
    if (decode_image(mutated.data(), mutated.size(), image, error)) {
      EXPECT_FALSE(png && mutated != bytes) << "a PNG with flipped bits decoded (flip " << i << ")";
      ASSERT_EQ(image.pixels.size(), size_t(image.width) * image.height * 3);
    } else {
      ASSERT_FALSE(error.empty());
    }
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

// The byte offset of each record of a shard (its index), read straight from the file.
std::vector<size_t> record_offsets(const std::vector<uint8_t>& shard) {
  uint64_t count, index;
  std::memcpy(&count, shard.data() + 16, 8);
  std::memcpy(&index, shard.data() + 24, 8);
  std::vector<size_t> offsets(count);
  for (uint64_t i = 0; i < count; ++i) std::memcpy(&offsets[i], shard.data() + index + 8 * i, 8);
  return offsets;
}

// Makes a record's (or the header's) CRC match its bytes again: damage only the labels can reveal.
void reseal_record(std::vector<uint8_t>& shard, size_t offset) {
  uint32_t body;
  std::memcpy(&body, shard.data() + offset, 4);
  if (offset + 8 + body > shard.size()) return;
  const uint32_t crc = crc32(shard.data() + offset + 8, body);
  std::memcpy(shard.data() + offset + 4, &crc, 4);
}
void reseal_header(std::vector<uint8_t>& shard) {
  const uint32_t crc = crc32(shard.data(), 60);
  std::memcpy(shard.data() + 60, &crc, 4);
}

// The acceptance's fuzz test: `cuface info` and `cuface pack --verify` on shards with random damage
// (CRCs resealed or not), crafted labels (an identity of 2^31-1 or 419,430,400, a gender of 5) and
// crafted headers, each run killed after 20 s and refused more than 1 GiB of address space. Every
// run ends on its own, quickly, with success or one clear error; labels the CRCs cannot vouch for
// are caught by --verify.
TEST(Fuzz, ProgramOnDamagedAndCraftedShardsEndsQuicklyWithinMemory) {
  ScratchDir dir;
  const std::string prefix = (dir / "p").string(), path = shard_path(prefix, 0, 1);
  {
    ShardWriter writer(path, 0, 1);
    const std::vector<uint8_t> jpeg = read_file(testing::fixture_path("image/synthetic_baseline.jpg"));
    const Image raw = testing::pattern_image(3, 8);
    const std::vector<uint8_t> png = encode_png(raw);
    writer.add({0, 1, 30}, "a.jpg", Encoding::Jpeg, 72, 56, 3, jpeg.data(), jpeg.size());
    writer.add({1, 0, 31}, "b", Encoding::Raw, 8, 8, 3, raw.pixels.data(), raw.pixels.size());
    writer.add({2, -1, -1}, "c/c.png", Encoding::Png, 8, 8, 3, png.data(), png.size());
    writer.finish();
  }
  testing::write_sidecar(prefix, 3, 3);
  const std::vector<uint8_t> intact = read_file(path);
  const std::vector<size_t> offsets = record_offsets(intact);

  // Crafted: a label field of record 1 set to an absurd value, the record's CRC resealed.
  struct Field {
    size_t at;  // within the record, from its length field
    int size;
    int64_t value;
  };
  std::vector<std::vector<uint8_t>> variants;
  std::vector<bool> label_damage;  // --verify must fail on these
  for (const Field f : {Field{8, 4, 2147483647}, Field{8, 4, 419430400}, Field{8, 4, 5000}, Field{8, 4, 3},
                        Field{8, 4, -9}, Field{12, 1, 5}, Field{12, 1, -3}, Field{14, 2, -9}}) {
    std::vector<uint8_t> bytes = intact;
    std::memcpy(bytes.data() + offsets[1] + f.at, &f.value, size_t(f.size));
    reseal_record(bytes, offsets[1]);
    variants.push_back(bytes);
    label_damage.push_back(true);
  }
  // Crafted headers: shard index and count out of range, CRC resealed.
  for (const auto& [index, count] : {std::pair<uint32_t, uint32_t>{0, 0}, {7, 2}, {0, 4294967295u}, {0, 100000}}) {
    std::vector<uint8_t> bytes = intact;
    std::memcpy(bytes.data() + 32, &index, 4);
    std::memcpy(bytes.data() + 36, &count, 4);
    reseal_header(bytes);
    variants.push_back(bytes);
    label_damage.push_back(true);
  }
  // Random: 1-4 flipped bits anywhere, every record resealed on odd iterations; or a truncation.
  std::mt19937_64 rng(17);
  for (int i = 0; i < scaled(12); ++i) {
    std::vector<uint8_t> bytes = intact;
    if (i % 6 == 5) {
      bytes.resize(rng() % bytes.size());
    } else {
      for (int k = 0, n = 1 + int(rng() % 4); k < n; ++k) bytes[rng() % bytes.size()] ^= uint8_t(1u << (rng() % 8));
      if (i % 2)
        for (size_t offset : offsets) reseal_record(bytes, offset);
    }
    variants.push_back(bytes);
    label_damage.push_back(false);
  }

  for (size_t v = 0; v < variants.size(); ++v) {
    testing::write_bytes(path, variants[v]);
    for (const std::string& command : {"info " + path, "pack --verify " + prefix}) {
      const auto start = std::chrono::steady_clock::now();
      const testing::Outcome run = testing::cuface_bounded(dir, command, 20);
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      EXPECT_TRUE(run.status == 0 || run.status == 1) << "variant " << v << ", " << command << ": status " << run.status
                                                      << "\n" << run.err;
      EXPECT_EQ(run.err.find("unexpected error"), std::string::npos)
          << "variant " << v << ", " << command << "\n" << run.err;
      EXPECT_LT(seconds, 5.0) << "variant " << v << ", " << command;
      if (run.status == 1) {
        EXPECT_NE(run.err.find("cuface: error: "), std::string::npos) << run.err;
      }
      if (label_damage[v] && command.starts_with("pack --verify")) {
        EXPECT_EQ(run.status, 1) << "variant " << v << ": --verify passed a record with impossible labels\n" << run.out;
      }
    }
  }
}

// Images that claim more pixels than any face photo (a PNG or PGM header of 40000 x 40000, a JPEG
// frame of 65000 x 65000) or are damaged (cut short, a marker inside the JPEG scan) are skipped by
// `cuface pack` with the reason, in bounded time and memory; the intact one is packed.
TEST(Fuzz, PackSkipsHugeAndDamagedImagesWithinBounds) {
  ScratchDir dir;
  const Image small = testing::pattern_image(1, 16);
  testing::fs::create_directories(dir / "in" / "a");
  testing::write_bytes(dir / "in" / "a" / "ok.png", encode_png(small));
  std::vector<uint8_t> png = encode_png(small);
  // IHDR: width and height at bytes 16..23, its CRC over bytes 12..28 (type and data) at 29.
  const uint8_t huge[8] = {0, 0, 0x9c, 0x40, 0, 0, 0x9c, 0x40};  // 40000 x 40000, big-endian
  std::memcpy(png.data() + 16, huge, 8);
  const uint32_t ihdr_crc = crc32(png.data() + 12, 17);
  for (int k = 0; k < 4; ++k) png[29 + size_t(k)] = uint8_t(ihdr_crc >> (24 - 8 * k));
  testing::write_bytes(dir / "in" / "a" / "huge.png", png);
  testing::write_text(dir / "in" / "a" / "huge.pgm", "P5\n40000 40000\n255\n" + std::string(64, '\x80'));
  std::vector<uint8_t> jpeg = read_file(testing::fixture_path("image/synthetic_baseline.jpg"));
  for (size_t i = 0; i + 8 < jpeg.size(); ++i)
    if (jpeg[i] == 0xFF && jpeg[i + 1] == 0xC0) {  // SOF0: length, precision, height, width
      jpeg[i + 5] = 0xFD, jpeg[i + 6] = 0xE8, jpeg[i + 7] = 0xFD, jpeg[i + 8] = 0xE8;  // 65000 x 65000
      break;
    }
  testing::write_bytes(dir / "in" / "a" / "huge.jpg", jpeg);
  std::mt19937_64 rng(23);
  const std::vector<uint8_t> good_jpeg = read_file(testing::fixture_path("image/synthetic_baseline.jpg"));
  for (int i = 0; i < 8; ++i) {
    std::vector<uint8_t> bytes = i % 2 ? encode_png(small) : good_jpeg;
    const size_t at = bytes.size() / 2 + rng() % (bytes.size() / 2 - 4);
    if (i % 4 == 2)  // an EOI marker inside the scan: stb stops there and fills the rest with grey
      bytes[at] = 0xFF, bytes[at + 1] = 0xD9;
    else  // cut before the end
      bytes.resize(at);
    testing::write_bytes(dir / "in" / "a" / ("bad" + std::to_string(i) + (i % 2 ? ".png" : ".jpg")), bytes);
  }
  const testing::Outcome run = testing::cuface_bounded(
      dir, "pack " + (dir / "in").string() + " --out " + (dir / "p").string() + " --size 16", 20);
  ASSERT_EQ(run.status, 0) << run.err;
  EXPECT_NE(run.out.find("packed 1 images"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("11 skipped"), std::string::npos) << run.out;
  for (const char* name : {"huge.png", "huge.pgm", "huge.jpg"})
    EXPECT_NE(run.err.find(std::string("a/") + name + ": too large:"), std::string::npos) << name << "\n" << run.err;
  for (int i = 0; i < 8; ++i)
    EXPECT_NE(run.err.find("a/bad" + std::to_string(i) + (i % 2 ? ".png: corrupt PNG" : ".jpg: corrupt JPEG")),
              std::string::npos)
        << i << "\n" << run.err;
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
