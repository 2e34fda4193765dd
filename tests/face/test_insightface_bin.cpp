// face/eval/insightface_bin: pickles written by Python (scripts/make_bin_fixture.py), hand-built
// opcode streams, and corrupt input that must give an Error, never a crash.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <fstream>
#include <random>

#include "engine/error.h"
#include "face/eval/insightface_bin.h"
#include "common/source_dir.h"

namespace cuface::eval {
namespace {

const std::string kFixtures = cuface::testing::fixture_path("");

std::vector<uint8_t> hex_bytes(const std::string& hex) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(uint8_t(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

std::vector<uint8_t> file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

std::string message_of(std::vector<uint8_t> bytes) {
  try {
    parse_verification_bin(std::move(bytes), "test.bin");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Little builders for hand-made pickle streams.
std::vector<uint8_t> operator+(std::vector<uint8_t> a, const std::vector<uint8_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}
std::vector<uint8_t> op(std::initializer_list<int> bytes) { return std::vector<uint8_t>(bytes.begin(), bytes.end()); }
std::vector<uint8_t> short_binbytes(const std::string& s) {
  return op({'C', int(s.size())}) + std::vector<uint8_t>(s.begin(), s.end());
}
std::vector<uint8_t> binbytes8(const std::string& s) {
  std::vector<uint8_t> out = op({0x8e});
  for (int i = 0; i < 8; ++i) out.push_back(uint8_t((uint64_t(s.size()) >> (8 * i)) & 0xff));
  return out + std::vector<uint8_t>(s.begin(), s.end());
}

class PythonWritten : public ::testing::TestWithParam<const char*> {};

TEST_P(PythonWritten, ImagesAndFlagsMatch) {
  std::ifstream expected_file(kFixtures + "verification_bin.json");
  ASSERT_TRUE(expected_file) << "run scripts/make_bin_fixture.py";
  const nlohmann::json expected = nlohmann::json::parse(expected_file);
  const VerificationBin bin = read_verification_bin(kFixtures + GetParam());
  ASSERT_EQ(bin.pairs(), expected["issame"].size());
  for (size_t i = 0; i < bin.pairs(); ++i) EXPECT_EQ(bin.same[i], expected["issame"][i].get<bool>() ? 1 : 0);
  ASSERT_EQ(bin.images.size(), expected["images"].size());
  for (size_t i = 0; i < bin.images.size(); ++i) {
    const std::vector<uint8_t> want = hex_bytes(expected["images"][i].get<std::string>());
    const auto got = bin.image(i);
    ASSERT_EQ(std::vector<uint8_t>(got.begin(), got.end()), want) << "image " << i;
    EXPECT_EQ(got[0], 0xFF);  // JPEG start-of-image marker
    EXPECT_EQ(got[1], 0xD8);
  }
}

INSTANTIATE_TEST_SUITE_P(Protocols, PythonWritten,
                         ::testing::Values("verification_p4.bin", "verification_p5.bin", "verification_py2.bin"));

TEST(InsightFaceBin, HandBuiltOpcodes) {
  // Protocol 2, the image list built with LIST and APPEND, a memo reference (BINGET) re-using an image,
  // BINBYTES8, flags as ints in two APPENDS batches, the tuple from MARK ... TUPLE.
  const std::vector<uint8_t> stream =
      op({0x80, 2, '('}) + op({'(', }) + short_binbytes("ab") + op({'q', 7, 'l'}) + binbytes8("xyz") + op({'a'}) +
      op({'h', 7, 'a'}) + short_binbytes("") + op({'a', ']', '(', 'K', 1, 'e', '(', 'K', 0, 'e', 't', '.'});
  const VerificationBin bin = parse_verification_bin(stream, "hand.bin");
  ASSERT_EQ(bin.pairs(), 2u);
  EXPECT_EQ(bin.same, (std::vector<uint8_t>{1, 0}));
  ASSERT_EQ(bin.images.size(), 4u);
  auto text = [&](size_t i) { return std::string(bin.image(i).begin(), bin.image(i).end()); };
  EXPECT_EQ(text(0), "ab");
  EXPECT_EQ(text(1), "xyz");
  EXPECT_EQ(text(2), "ab");
  EXPECT_EQ(text(3), "");
}

TEST(InsightFaceBin, WrongContentIsNamed) {
  // One pair but three images.
  std::string e = message_of(op({0x80, 4, ']', '('}) + short_binbytes("a") + short_binbytes("b") + short_binbytes("c") +
                             op({'e', ']', 0x88, 'a', 0x86, '.'}));
  EXPECT_NE(e.find("3 images for 1 pairs"), std::string::npos) << e;
  // A numpy bool (GLOBAL / REDUCE) in the is-same list.
  e = message_of(op({0x80, 2, ']', ']', 'c', 'n', 'u', 'm', 'p', 'y', '\n', 'b', '\n', 0x86, '.'}));
  EXPECT_NE(e.find("numpy"), std::string::npos) << e;
  EXPECT_NE(e.find("test.bin"), std::string::npos) << e;
  // A str where an image should be.
  e = message_of(op({0x80, 4, ']', 0x8c, 1, 'x', 'a', 0x8c, 1, 'y', 'a', ']', 0x89, 'a', 0x86, '.'}));
  EXPECT_NE(e.find("image 0 is a str"), std::string::npos) << e;
  // Not a pickle at all, and a protocol too old.
  EXPECT_NE(message_of(op({'h', 'e', 'l', 'l', 'o'})), "");
  EXPECT_NE(message_of(op({0x80, 1, '.'})).find("protocol 1"), std::string::npos);
  EXPECT_NE(message_of({}).find("ends before"), std::string::npos);
  EXPECT_THROW(read_verification_bin(kFixtures + "absent.bin"), Error);
}

TEST(InsightFaceBin, CorruptBytesNeverCrash) {
  const std::vector<uint8_t> good = file_bytes(kFixtures + "verification_p4.bin");
  ASSERT_FALSE(good.empty());
  for (size_t n = 0; n < good.size(); ++n)
    EXPECT_NE(message_of(std::vector<uint8_t>(good.begin(), good.begin() + long(n))), "") << "truncated to " << n;
  // Random byte changes: parsed or rejected with an Error, nothing else (ASan / UBSan builds check memory).
  std::mt19937 rng(5);
  for (int trial = 0; trial < 3000; ++trial) {
    std::vector<uint8_t> bad = good;
    for (int k = 0; k < 1 + trial % 4; ++k) bad[rng() % bad.size()] = uint8_t(rng());
    try {
      parse_verification_bin(bad, "fuzz.bin");
    } catch (const Error&) {
    }
  }
}

}  // namespace
}  // namespace cuface::eval
