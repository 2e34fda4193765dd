// The `cuface pack` and `cuface info PACK` command lines, parsed and run as the program does.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdlib>
#include <sstream>

#include "cuface_program.h"
#include "data.h"
#include "engine/error.h"
#include "face/cli/commands.h"
#include "face/pack/crc32.h"
#include "face/pack/pack.h"
#include "recordio_writer.h"

namespace cuface {
namespace {

namespace fs = std::filesystem;
using testing::ScratchDir;

// Runs `cuface ARGS...` through CLI11 like face/main.cpp (errors propagate as exceptions).
void run(std::vector<std::string> args) {
  CLI::App app{"cuface"};
  app.require_subcommand(1);
  cli::add_info_command(app);
  cli::add_pack_command(app);
  args.insert(args.begin(), "cuface");
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  cli::set_command_line(int(argv.size()), argv.data());
  app.parse(int(argv.size()), argv.data());
}

TEST(PackCommand, PacksVerifiesAndDescribes) {
  CUFACE_REQUIRE_SHARED_DATA("orl");
  ScratchDir dir;
  run({"pack", testing::shared_data("orl"), "--format", "tree", "--out", dir / "orl", "--size", "64", "--shards", "2",
       "--jobs", "2", "--min-per-class", "10", "--encoding", "raw"});
  const Pack pack(dir / "orl");
  EXPECT_EQ(pack.size(), 400);
  EXPECT_EQ(pack.shards().size(), 2u);
  EXPECT_EQ(pack.metadata().at("image_size"), 64);
  EXPECT_EQ(pack.metadata().at("encoding"), "raw");
  EXPECT_NE(pack.metadata().at("command").get<std::string>().find("--shards 2"), std::string::npos);
  EXPECT_NO_THROW(run({"pack", "--verify", dir / "orl"}));
  EXPECT_NO_THROW(run({"info", dir / "orl"}));
  EXPECT_NO_THROW(run({"info", shard_path(dir / "orl", 1, 2)}));

  // One flipped pixel byte in the second shard: --verify fails naming that shard and record.
  const std::string second = shard_path(dir / "orl", 1, 2);
  std::vector<uint8_t> bytes = read_file(second);
  bytes[bytes.size() / 2] ^= 4;
  testing::write_bytes(second, bytes);
  try {
    run({"pack", "--verify", dir / "orl"});
    ADD_FAILURE() << "--verify passed a damaged pack";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(second + " record "), std::string::npos) << e.what();
  }
  // The program itself: exit status 1 and the record named on stderr.
  const std::string command = cuface::testing::cuface_binary() + " pack --verify " + (dir / "orl").string() + " 2> " +
                              (dir / "stderr").string();
  const int status = std::system(command.c_str());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << status;
  const std::vector<uint8_t> err = read_file(dir / "stderr");
  EXPECT_NE(std::string(err.begin(), err.end()).find("cuface: error: verify failed: " + second + " record "),
            std::string::npos);
}

// Skipped images are reported one per line: in a log (stderr not a terminal) a skip message used to
// run into the next progress line ("...(expected marker)packing 5/5 images").
TEST(PackCommand, SkippedImagesAndProgressAreSeparateLines) {
  CUFACE_REQUIRE_SHARED_DATA("orl");
  ScratchDir dir;
  testing::write_text(dir / "text.jpg", "hello");
  testing::write_text(dir / "list.txt", testing::shared_data("orl/s1/1.pgm") + " a\n" + (dir / "text.jpg").string() +
                                            " a\n" + testing::shared_data("orl/s2/1.pgm") + " b\n");
  const testing::Outcome run =
      testing::cuface(dir, "pack " + (dir / "list.txt").string() + " --format list --out " + (dir / "p").string());
  ASSERT_EQ(run.status, 0) << run.err;
  EXPECT_NE(run.err.find("skipped " + (dir / "text.jpg").string() + ": not a decodable image"), std::string::npos)
      << run.err;
  std::istringstream lines(run.err);
  for (std::string line; std::getline(lines, line);)
    EXPECT_TRUE(line.starts_with("skipped ") || line.starts_with("packing ") || line.starts_with("  ")) << line;
}

// Small PNG faces under dir/NAME/<person>/<person>_K.png, and the names relative to dir/NAME.
std::vector<std::string> write_people(const ScratchDir& dir, const std::string& name,
                                      const std::vector<std::pair<std::string, int>>& people) {
  std::vector<std::string> files;
  int seed = 0;
  for (const auto& [person, count] : people)
    for (int k = 1; k <= count; ++k) {
      files.push_back(person + "/" + person + "_" + std::to_string(k) + ".png");
      fs::create_directories(dir / name / person);
      testing::write_bytes(dir / name / files.back(), encode_png(testing::pattern_image(seed++, 48)));
    }
  return files;
}

// The 5 landmarks of a 48 x 48 face, in the LFW landmark file's format.
std::string landmark_line(const std::string& file) {
  return file + " 16.4 22.2 31.5 22.1 24.0 30.7 17.8 39.6 30.3 39.5\n";
}

// A landmark file for some people only: the others' images are skipped, and classes are counted
// after that (they were counted before: 3 classes, 2 of them empty).
TEST(PackCommand, ClassesAreCountedAfterSkippingImagesWithoutLandmarks) {
  ScratchDir dir;
  const std::vector<std::string> files = write_people(dir, "tree", {{"ann", 2}, {"bob", 2}, {"cy", 2}});
  testing::write_text(dir / "landmarks.txt", landmark_line(files[2]) + landmark_line(files[3]));
  const testing::Outcome run = testing::cuface(dir, "pack " + (dir / "tree").string() + " --align " +
                                                        (dir / "landmarks.txt").string() + " --size 32 --out " +
                                                        (dir / "p").string());
  ASSERT_EQ(run.status, 0) << run.err;
  EXPECT_NE(run.out.find("packed 2 images of 1 classes"), std::string::npos) << run.out;
  const Pack pack(dir / "p");
  EXPECT_EQ(pack.classes(), 1);
  EXPECT_EQ(pack.metadata().at("identity_names"), nlohmann::json::array({"bob"}));
  EXPECT_EQ(pack.metadata().at("images_per_class"), nlohmann::json::array({2}));
  for (int64_t i = 0; i < pack.size(); ++i) EXPECT_EQ(pack.record(i).labels.identity, 0);
  EXPECT_FALSE(fs::exists(shard_path(dir / "p", 0, 1) + ".draft"));
}

// --min-per-class counts packed images: a person with 2 listed images, one of them unreadable, is
// dropped by --min-per-class 2 (it used to be kept with 1 image); the remaining classes are
// renumbered densely across shards, in input order.
TEST(PackCommand, MinPerClassCountsPackedImagesAndShardsAreNeverEmpty) {
  ScratchDir dir;
  write_people(dir, "tree", {{"ann", 2}, {"bob", 2}, {"cy", 3}});
  testing::write_text(dir / "tree" / "bob" / "bob_2.png", "not an image");
  testing::Outcome packed = testing::cuface(dir, "pack " + (dir / "tree").string() + " --size 32 --min-per-class 2 "
                                                     "--shards 2 --out " + (dir / "p").string());
  ASSERT_EQ(packed.status, 0) << packed.err;
  EXPECT_NE(packed.out.find("packed 5 images of 2 classes into 2 shard(s)"), std::string::npos) << packed.out;
  EXPECT_NE(packed.out.find("1 skipped, 1 dropped by --min-per-class"), std::string::npos) << packed.out;
  const Pack pack(dir / "p");
  ASSERT_EQ(pack.size(), 5);
  EXPECT_EQ(pack.classes(), 2);
  EXPECT_EQ(pack.metadata().at("identity_names"), nlohmann::json::array({"ann", "cy"}));
  const std::vector<int> expected{0, 0, 1, 1, 1};
  std::vector<int> identities;
  for (int64_t k = 0; k < 5; ++k) {  // pack order is record k of shard k mod 2
    const RecordView r = pack.shards()[size_t(k % 2)]->record(k / 2);
    identities.push_back(r.labels.identity);
    EXPECT_EQ(std::string(r.source).substr(0, 2), k < 2 ? "an" : "cy");
  }
  EXPECT_EQ(identities, expected);
  EXPECT_EQ(std::string(pack.record(0).source), "ann/ann_1.png");
  EXPECT_NO_THROW(run({"pack", "--verify", dir / "p"}));

  // More shards than images: as many shards as images, none empty, and a note.
  packed = testing::cuface(dir, "pack " + (dir / "tree").string() + " --size 32 --shards 10 --out " + (dir / "q").string());
  ASSERT_EQ(packed.status, 0) << packed.err;
  EXPECT_NE(packed.err.find("note: --shards 10 for 6 images: 6 shard(s) written"), std::string::npos) << packed.err;
  int shards = 0;
  for (const auto& entry : fs::directory_iterator(dir.path())) shards += entry.path().filename().string().starts_with("q-");
  EXPECT_EQ(shards, 6);
  EXPECT_EQ(Pack(dir / "q").shards().size(), 6u);
}

// --out in a folder that does not exist yet: created. --help shows every default. A skip reason is
// shown whole in the per-reason counts.
TEST(PackCommand, CreatesTheOutFolderShowsDefaultsAndWholeReasons) {
  ScratchDir dir;
  write_people(dir, "tree", {{"ann", 2}});
  testing::write_text(dir / "tree" / "ann" / "readme.png", "this is text");
  const testing::Outcome run = testing::cuface(dir, "pack " + (dir / "tree").string() + " --size 32 --out " +
                                                        (dir / "new" / "deeper" / "p").string());
  ASSERT_EQ(run.status, 0) << run.err;
  EXPECT_TRUE(fs::exists(dir / "new" / "deeper" / "p.json"));
  EXPECT_NE(run.err.find("\n  1 skipped: not a decodable image (unknown image type)\n"), std::string::npos) << run.err;

  const testing::Outcome help = testing::cuface(dir, "pack --help");
  ASSERT_EQ(help.status, 0);
  std::istringstream lines(help.out);
  int checked = 0;
  for (std::string line; std::getline(lines, line);) {
    const size_t name = line.find("--");
    const bool takes_value = line.find(" TEXT") != std::string::npos || line.find(" INT") != std::string::npos ||
                             line.find(" FLOAT") != std::string::npos;
    if (name != 2 || !takes_value)
      continue;  // not an option taking a value
    const size_t flag_end = line.find(' ', 2);
    const std::string flag = line.substr(2, flag_end - 2);
    if (flag == "--out" || flag == "--align" || flag == "--verify") continue;  // no default to show
    const std::string type = line.substr(flag_end + 1, line.find(' ', flag_end + 1) - flag_end - 1);
    EXPECT_NE(type.find('='), std::string::npos) << flag << " shows no default: " << line;  // CLI11: "INT=112"
    ++checked;
  }
  EXPECT_GE(checked, 11);  // --format, --detect-mode, --pad, --landmark-model, --size, ... --labels
  EXPECT_NE(help.out.find("--format TEXT:{tree,list,utkface,rec,legacy}=tree"), std::string::npos) << help.out;
}

// A record naming an absurd identity (a flipped bit: 419,430,400 or 2^31-1) is refused at once,
// without allocating for it; --verify checks identities against the pack's class count.
TEST(PackCommand, AbsurdIdentitiesAreRefusedWithoutAllocatingForThem) {
  ScratchDir dir;
  const Image image = testing::pattern_image(0, 8);
  for (const int32_t identity : {419430400, 2147483647}) {
    const std::string shard = (dir / ("s" + std::to_string(identity) + ".cfpk")).string();
    {
      ShardWriter writer(shard, 0, 1);
      writer.add({0, 0, 20}, "a", Encoding::Raw, 8, 8, 3, image.pixels.data(), image.pixels.size());
      writer.add({identity, 0, 20}, "b", Encoding::Raw, 8, 8, 3, image.pixels.data(), image.pixels.size());
      writer.finish();
    }
    const testing::Outcome info = testing::cuface_bounded(dir, "info " + shard, 20);
    EXPECT_EQ(info.status, 1) << info.out << info.err;
    EXPECT_NE(info.err.find("record 1: identity " + std::to_string(identity) + " is impossible"), std::string::npos)
        << info.err;
  }
  // Identity 5000 in a pack of 2 classes: --verify names it (it used to verify, then training failed).
  testing::write_pattern_pack(dir / "p", 4, 2, 8);
  std::vector<uint8_t> bytes = read_file(shard_path(dir / "p", 0, 1));
  const int32_t identity = 5000;  // record 0 starts right after the 64-byte header
  std::memcpy(bytes.data() + 64 + 8, &identity, 4);
  uint32_t body;
  std::memcpy(&body, bytes.data() + 64, 4);
  const uint32_t crc = crc32(bytes.data() + 64 + 8, body);
  std::memcpy(bytes.data() + 64 + 4, &crc, 4);
  testing::write_bytes(shard_path(dir / "p", 0, 1), bytes);
  const testing::Outcome verify = testing::cuface(dir, "pack --verify " + (dir / "p").string());
  EXPECT_EQ(verify.status, 1) << verify.out;
  EXPECT_NE(verify.err.find("record 0: identity 5000 is not one of the pack's 2 classes"), std::string::npos) << verify.err;
}

// An InsightFace header record promising a billion images, when the index lists three, is one error
// (it used to list a billion missing keys).
TEST(PackCommand, RecordIOHeaderPromisingMoreImagesThanTheIndexIsAnError) {
  ScratchDir dir;
  const std::vector<uint8_t> png = encode_png(testing::pattern_image(0, 16));
  testing::RecordIOWriter writer;
  std::vector<uint64_t> offsets{writer.write(testing::image_record_payload(2, 0, {1e9f, 1e9f}, 0, {}))};
  offsets.push_back(writer.write(testing::image_record_payload(0, 0, {}, 1, png)));
  offsets.push_back(writer.write(testing::image_record_payload(0, 1, {}, 2, png)));
  writer.save(dir / "train.rec", dir / "train.idx", offsets, {0, 1, 2});
  const testing::Outcome run =
      testing::cuface_bounded(dir, "pack " + (dir / "train.rec").string() + " --format rec --size 16 --out " +
                                       (dir / "p").string(), 20);
  EXPECT_EQ(run.status, 1) << run.out;
  EXPECT_NE(run.err.find("announces images up to key 1000000000"), std::string::npos) << run.err;
}

TEST(PackCommand, RejectsBadFlags) {
  ScratchDir dir;
  EXPECT_THROW(run({"pack", dir.path(), "--format", "zip", "--out", dir / "x"}), CLI::ValidationError);
  EXPECT_THROW(run({"pack", dir.path(), "--out", dir / "x", "--encoding", "webp"}), Error);
  EXPECT_THROW(run({"pack", "--out", dir / "x"}), Error);  // no INPUT
  EXPECT_THROW(run({"pack", "--verify", dir / "none"}), Error);
}

}  // namespace
}  // namespace cuface
