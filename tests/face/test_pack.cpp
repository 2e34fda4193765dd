// The pack format: CRC, shard round trips, corruption and truncation, pack sets.
#include <gtest/gtest.h>

#include <random>

#include "data.h"
#include "engine/error.h"
#include "face/pack/crc32.h"
#include "face/pack/pack.h"
#include "face/pack/shard.h"
#include "face/pack/verify.h"

namespace cuface {
namespace {

using testing::ScratchDir;

// Bit-at-a-time CRC-32, the textbook definition the table-driven version must equal.
uint32_t crc32_bitwise(const uint8_t* p, size_t n) {
  uint32_t crc = 0xffffffffu;
  for (size_t i = 0; i < n; ++i) {
    crc ^= p[i];
    for (int k = 0; k < 8; ++k) crc = (crc & 1) ? (crc >> 1) ^ 0xEDB88320u : crc >> 1;
  }
  return ~crc;
}

TEST(Crc32, MatchesTheStandardCheckValueAndTheBitwiseDefinition) {
  EXPECT_EQ(crc32("123456789", 9), 0xCBF43926u);  // the CRC-32 catalogue's check value
  EXPECT_EQ(crc32("", 0), 0u);
  std::mt19937_64 rng(3);
  std::vector<uint8_t> data(1000);
  for (uint8_t& b : data) b = uint8_t(rng());
  for (size_t n : {1, 7, 8, 9, 63, 64, 65, 999, 1000}) EXPECT_EQ(crc32(data.data(), n), crc32_bitwise(data.data(), n)) << n;
  EXPECT_EQ(crc32(data.data() + 13, 500, crc32(data.data(), 13)), crc32(data.data(), 513));  // continuation
}

TEST(Shard, RecordsRoundTrip) {
  ScratchDir dir;
  const std::string path = dir / "a.cfpk";
  const Image small = testing::pattern_image(5, 4);
  const std::vector<uint8_t> jpeg = read_file(testing::fixture_path("image/synthetic_baseline.jpg"));
  {
    ShardWriter writer(path, 2, 7);
    writer.add({17, 1, 33}, "x/one.png", Encoding::Raw, 4, 4, 3, small.pixels.data(), small.pixels.size());
    writer.add({-1, -1, -1}, "", Encoding::Jpeg, 72, 56, 3, jpeg.data(), jpeg.size());
    writer.add({0, 0, 116}, "z/three.jpg", Encoding::Jpeg, 72, 56, 3, jpeg.data(), 5);  // odd length: padding
    writer.finish();
  }
  const Shard shard(path);
  ASSERT_EQ(shard.size(), 3);
  EXPECT_EQ(shard.shard_index(), 2u);
  EXPECT_EQ(shard.shard_count(), 7u);
  const RecordView a = shard.record(0);
  EXPECT_EQ(a.labels.identity, 17);
  EXPECT_EQ(a.labels.gender, 1);
  EXPECT_EQ(a.labels.age, 33);
  EXPECT_EQ(a.encoding, Encoding::Raw);
  EXPECT_EQ(a.source, "x/one.png");
  EXPECT_EQ(std::vector<uint8_t>(a.data, a.data + a.size), small.pixels);
  const RecordView b = shard.record(1);
  EXPECT_EQ(b.labels.identity, -1);
  EXPECT_EQ(b.labels.gender, -1);
  EXPECT_EQ(b.labels.age, -1);
  EXPECT_EQ(b.source, "");
  EXPECT_EQ(b.width, 72);
  EXPECT_EQ(b.height, 56);
  EXPECT_EQ(std::vector<uint8_t>(b.data, b.data + b.size), jpeg);
  EXPECT_EQ(shard.record(2).size, 5u);
  std::string error;
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(shard.check(i, error)) << error;
  EXPECT_THROW(shard.record(3), Error);
}

TEST(Shard, UnfinishedWriterLeavesNoFile) {
  ScratchDir dir;
  const std::string path = dir / "a.cfpk";
  {
    ShardWriter writer(path, 0, 1);
    const Image image = testing::pattern_image(1, 8);
    writer.add({}, "p", Encoding::Raw, 8, 8, 3, image.pixels.data(), image.pixels.size());
    EXPECT_TRUE(testing::fs::exists(path + ".tmp"));
  }  // destroyed without finish(): a failed pack
  EXPECT_FALSE(testing::fs::exists(path));
  EXPECT_FALSE(testing::fs::exists(path + ".tmp"));
}

TEST(Shard, TruncatedShardIsRejected) {
  ScratchDir dir;
  testing::write_pattern_pack(dir / "p", 10, 3, 8);
  const std::string path = shard_path(dir / "p", 0, 1);
  const std::vector<uint8_t> bytes = read_file(path);
  for (size_t keep : {bytes.size() - 1, bytes.size() / 2, size_t(70)}) {
    const std::string cut = dir / "cut.cfpk";
    testing::write_bytes(cut, std::vector<uint8_t>(bytes.begin(), bytes.begin() + std::ptrdiff_t(keep)));
    try {
      Shard shard(cut);
      ADD_FAILURE() << "a shard cut to " << keep << " bytes was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(cut), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
    }
  }
  testing::write_bytes(dir / "tiny.cfpk", std::vector<uint8_t>(bytes.begin(), bytes.begin() + 40));
  EXPECT_THROW(Shard(dir / "tiny.cfpk"), Error);
}

TEST(Shard, ForeignAndDamagedHeadersAreRejected) {
  ScratchDir dir;
  testing::write_text(dir / "readme.cfpk", std::string(200, 'x'));
  try {
    Shard shard(dir / "readme.cfpk");
    ADD_FAILURE() << "text file accepted as a shard";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not a cuface shard"), std::string::npos) << e.what();
  }
  testing::write_pattern_pack(dir / "p", 4, 2, 8);
  const std::string path = shard_path(dir / "p", 0, 1);
  std::vector<uint8_t> bytes = read_file(path);
  bytes[20] ^= 1;  // record count
  testing::write_bytes(dir / "h.cfpk", bytes);
  EXPECT_THROW(Shard(dir / "h.cfpk"), Error);
  bytes[20] ^= 1;
  bytes[bytes.size() - 10] ^= 0x40;  // inside the index
  testing::write_bytes(dir / "i.cfpk", bytes);
  try {
    Shard shard(dir / "i.cfpk");
    ADD_FAILURE() << "damaged index accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("index is corrupt"), std::string::npos) << e.what();
  }
}

TEST(Shard, VerifyNamesTheFirstCorruptRecord) {
  ScratchDir dir;
  testing::write_pattern_pack(dir / "p", 10, 3, 8);
  const std::string path = shard_path(dir / "p", 0, 1);
  std::vector<uint8_t> bytes = read_file(path);
  // Where records 6's and 8's pixels lie in the file (record 0 follows the header), then flip a bit in each.
  size_t offset6, offset8;
  {
    const Shard shard(path);
    const uint8_t* base = shard.record(0).data - (kShardHeaderBytes + kRecordPrefixBytes + kRecordFixedBytes +
                                                  shard.record(0).source.size());
    offset6 = size_t(shard.record(6).data - base) + 17;
    offset8 = size_t(shard.record(8).data - base) + 3;
  }
  bytes[offset8] ^= 0x10;
  bytes[offset6] ^= 0x01;
  testing::write_bytes(path, bytes);

  const Pack pack(dir / "p");
  const VerifyResult result = verify_pack(pack, 2);
  EXPECT_EQ(result.records, 10);
  EXPECT_EQ(result.first_bad, 6);
  EXPECT_NE(result.error.find(path + " record 6 (pattern/6)"), std::string::npos) << result.error;
  EXPECT_NE(result.error.find("CRC mismatch"), std::string::npos) << result.error;
  std::string error;
  EXPECT_TRUE(verify_record(pack, 5, error)) << error;
  EXPECT_FALSE(verify_record(pack, 8, error));
}

TEST(Shard, VerifyDecodesImages) {
  // A JPEG record whose bytes are intact (CRC matches) but do not decode.
  ScratchDir dir;
  {
    ShardWriter writer(shard_path(dir / "p", 0, 1), 0, 1);
    const std::vector<uint8_t> jpeg = read_file(testing::fixture_path("image/synthetic_baseline.jpg"));
    writer.add({0, -1, -1}, "good.jpg", Encoding::Jpeg, 72, 56, 3, jpeg.data(), jpeg.size());
    writer.add({0, -1, -1}, "bad.jpg", Encoding::Jpeg, 72, 56, 3, jpeg.data(), 30);
    writer.finish();
    testing::write_sidecar(dir / "p", 2, 1);
  }
  const VerifyResult result = verify_pack(Pack(dir / "p"), 1);
  EXPECT_EQ(result.first_bad, 1);
  EXPECT_NE(result.error.find("bad.jpg"), std::string::npos) << result.error;
}

TEST(Pack, SidecarOrLoneShardOrAClearError) {
  ScratchDir dir;
  testing::write_pattern_pack(dir / "p", 7, 4, 8);
  EXPECT_EQ(Pack(dir / "p").size(), 7);
  EXPECT_EQ(Pack(dir / "p").classes(), 4);
  EXPECT_EQ(Pack(dir / "p.json").size(), 7);
  const Pack lone(shard_path(dir / "p", 0, 1));
  EXPECT_EQ(lone.size(), 7);
  EXPECT_EQ(lone.classes(), 4);  // 1 + the largest identity
  EXPECT_TRUE(lone.metadata().empty());
  try {
    Pack missing(dir / "nothing");
    ADD_FAILURE() << "missing pack opened";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("nothing.json not found"), std::string::npos) << e.what();
  }
}

TEST(PackSet, LaterPacksIdentitiesAreShifted) {
  ScratchDir dir;
  testing::write_pattern_pack(dir / "a", 6, 3, 8);
  testing::write_pattern_pack(dir / "b", 10, 5, 8);
  const PackSet set({dir / "a", dir / "b"});
  EXPECT_EQ(set.size(), 16);
  EXPECT_EQ(set.classes(), 8);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(set.record(i).labels.identity, i % 3);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(set.record(6 + i).labels.identity, 3 + i % 5);
    EXPECT_EQ(set.record(6 + i).labels.age, 20 + i);  // other labels are not shifted
    EXPECT_EQ(set.record(6 + i).source, "pattern/" + std::to_string(i));
  }
  EXPECT_NE(set.describe(7).find("b-00000-of-00001.cfpk record 1"), std::string::npos) << set.describe(7);
  EXPECT_THROW(set.record(16), Error);
}

}  // namespace
}  // namespace cuface
