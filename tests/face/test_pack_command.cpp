// The `cuface pack` and `cuface info PACK` command lines, parsed and run as the program does.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdlib>
#include <sstream>

#include "data.h"
#include "engine/error.h"
#include "face/cli/commands.h"
#include "face/pack/pack.h"
#include "cuface_program.h"

namespace cuface {
namespace {

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

TEST(PackCommand, RejectsBadFlags) {
  ScratchDir dir;
  EXPECT_THROW(run({"pack", dir.path(), "--format", "zip", "--out", dir / "x"}), CLI::ValidationError);
  EXPECT_THROW(run({"pack", dir.path(), "--out", dir / "x", "--encoding", "webp"}), Error);
  EXPECT_THROW(run({"pack", "--out", dir / "x"}), Error);  // no INPUT
  EXPECT_THROW(run({"pack", "--verify", dir / "none"}), Error);
}

}  // namespace
}  // namespace cuface
