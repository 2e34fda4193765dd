// face/eval/pairs: both list formats, and errors that name the file and line.
#include <gtest/gtest.h>

#include "engine/error.h"
#include "face/eval/pairs.h"
#include "scratch_dir.h"

namespace cuface::eval {
namespace {

using testing::ScratchDir;

// The error message `f` throws (empty when it does not throw).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

const char* kLfw =
    "2 2\n"
    "Alice 1 2\n"
    "Bob 1 3\n"
    "Alice 1 Bob 2\n"
    "Carol 4 Bob 1\n"
    "# a comment, then a blank line\n"
    "\n"
    "Carol 1 2\n"
    "Alice 2 3\n"
    "Bob 2 Carol 3\n"
    "Alice 3 Carol 12\r\n";

TEST(Pairs, ReadsLfwFormat) {
  ScratchDir dir;
  const PairList list = read_pairs(dir.write("pairs.txt", kLfw));
  EXPECT_TRUE(list.lfw);
  EXPECT_EQ(list.folds, 2);
  ASSERT_EQ(list.pairs.size(), 8u);
  EXPECT_EQ(list.pairs[0].first, "Alice/Alice_0001.jpg");
  EXPECT_EQ(list.pairs[0].second, "Alice/Alice_0002.jpg");
  EXPECT_TRUE(list.pairs[0].same);
  EXPECT_EQ(list.pairs[3].first, "Carol/Carol_0004.jpg");
  EXPECT_EQ(list.pairs[3].second, "Bob/Bob_0001.jpg");
  EXPECT_FALSE(list.pairs[3].same);
  EXPECT_EQ(list.pairs[4].line, 8);  // comment and blank lines still count
  EXPECT_EQ(list.pairs[7].second, "Carol/Carol_0012.jpg");
  EXPECT_EQ(list.where(list.pairs[4]), (dir / "pairs.txt").string() + ":8");
  // Distinct images in first-mention order.
  const std::vector<std::string> images = list.images();
  EXPECT_EQ(images.size(), 11u);
  EXPECT_EQ(images[0], "Alice/Alice_0001.jpg");
  EXPECT_EQ(images[2], "Bob/Bob_0001.jpg");
}

TEST(Pairs, SingleNumberHeaderIsOneFold) {
  ScratchDir dir;
  const PairList list = read_pairs(dir.write("pairs.txt", "1\nA 1 2\nA 1 B 1\n"));
  EXPECT_EQ(list.folds, 1);
  EXPECT_EQ(list.pairs.size(), 2u);
}

TEST(Pairs, ReadsGenericList) {
  ScratchDir dir;
  const PairList list = read_pairs(dir.write("list.txt", "a/x.jpg b/./y.jpg 1\n/abs/z.jpg a/x.jpg 0\n"));
  EXPECT_FALSE(list.lfw);
  EXPECT_EQ(list.folds, 0);
  ASSERT_EQ(list.pairs.size(), 2u);
  EXPECT_EQ(list.pairs[0].second, "b/y.jpg");
  EXPECT_TRUE(list.pairs[0].same);
  EXPECT_EQ(list.pairs[1].first, "/abs/z.jpg");
  EXPECT_FALSE(list.pairs[1].same);
}

TEST(Pairs, ErrorsNameFileAndLine) {
  ScratchDir dir;
  auto error_for = [&](const std::string& content) {
    const auto file = dir.write("p.txt", content);
    return error_of([&] { read_pairs(file); });
  };
  const std::string file = (dir / "p.txt").string();
  std::string e = error_for("10 zero\nA 1 2\n");
  EXPECT_NE(e.find(file + ":1: bad header '10 zero'"), std::string::npos) << e;
  e = error_for("1 1\nA 1 2\nA 1 B 2 C\n");
  EXPECT_NE(e.find(file + ":3: expected 'name i j' or 'name1 i name2 j', found 5 fields"), std::string::npos) << e;
  e = error_for("1 1\nA 1 two\nA 1 B 2\n");
  EXPECT_NE(e.find(file + ":2: 'two' is not an image number"), std::string::npos) << e;
  e = error_for("1 1\nA 1 2\nA 0 B 2\n");
  EXPECT_NE(e.find(file + ":3: '0' is not an image number"), std::string::npos) << e;
  e = error_for("2 1\nA 1 2\nA 1 B 2\n");
  EXPECT_NE(e.find("promises 2 folds of 2 x 1 = 4 pairs, the file has 2"), std::string::npos) << e;
  e = error_for("a.jpg b.jpg 2\n");
  EXPECT_NE(e.find(file + ":1: the label must be 0 (different) or 1 (same), found '2'"), std::string::npos) << e;
  e = error_for("A 1 2\nA 1 B 2\n");  // an LFW file without its header
  EXPECT_NE(e.find(file + ":1: the label must be 0 (different) or 1 (same), found '2' (an LFW pairs.txt starts with"),
            std::string::npos)
      << e;
  e = error_for("a.jpg b.jpg 1\na.jpg 1\n");
  EXPECT_NE(e.find(file + ":2: expected 'pathA pathB 0|1', found 2 fields"), std::string::npos) << e;
  e = error_for("# only a comment\n");
  EXPECT_NE(e.find("has no pairs"), std::string::npos) << e;
  e = error_of([&] { read_pairs(dir / "absent.txt"); });
  EXPECT_NE(e.find("cannot open pairs file"), std::string::npos) << e;
}

TEST(Pairs, MissingImagesAndNamesAreReportedWithTheLine) {
  ScratchDir dir;
  const auto root = dir / "images";
  for (const char* image : {"Alice/Alice_0001.jpg", "Alice/Alice_0002.jpg", "Bob/Bob_0001.jpg"})
    dir.write(std::string("images/") + image, "jpeg");
  const auto file = dir.write("pairs.txt", "1 2\nAlice 1 2\nBob 1 1\nAlice 1 Bob 1\nAlice 2 Dave 1\n");
  std::string e = error_of([&] { check_pair_images(read_pairs(file), root); });
  EXPECT_NE(e.find(file.string() + ":5: name 'Dave' not found"), std::string::npos) << e;

  dir.write("images/Dave/Dave_0001.jpg", "jpeg");
  EXPECT_EQ(error_of([&] { check_pair_images(read_pairs(file), root); }), "");

  const auto missing = dir.write("pairs2.txt", "1 1\nAlice 1 3\nAlice 1 Bob 1\n");
  e = error_of([&] { check_pair_images(read_pairs(missing), root); });
  EXPECT_NE(e.find(missing.string() + ":2: image " + (root / "Alice/Alice_0003.jpg").string() + " not found"),
            std::string::npos)
      << e;
}

TEST(Pairs, ImageKeysAndRows) {
  ScratchDir dir;
  const auto root = dir / "images";
  EXPECT_EQ(image_key("A/A_0001.jpg", root), "A/A_0001.jpg");
  EXPECT_EQ(image_key(root / "A/./A_0001.jpg", root), "A/A_0001.jpg");  // absolute, under the root
  EXPECT_EQ(image_key("/elsewhere/x.jpg", root), "/elsewhere/x.jpg");
  EXPECT_EQ(listed_image_key("A/A_0001.jpg", root), "A/A_0001.jpg");
  EXPECT_EQ(listed_image_key("data/lfw/A/A_0001.jpg", "data/lfw"), "A/A_0001.jpg");
  EXPECT_EQ(listed_image_key((root / "B/b.jpg").string(), root), "B/b.jpg");

  const auto file = dir.write("pairs.txt", "A/a.jpg B/b.jpg 0\nB/b.jpg A/a.jpg 1\nA/a.jpg C/c.jpg 0\n");
  const PairList list = read_pairs(file);
  const std::unordered_map<std::string, int64_t> rows{{"A/a.jpg", 0}, {"B/b.jpg", 1}};
  std::string e = error_of([&] { pair_rows(list, root, rows, "emb.txt"); });
  EXPECT_NE(e.find(file.string() + ":3: image C/c.jpg is not in emb.txt"), std::string::npos) << e;
  const PairList first_two{list.source, {list.pairs[0], list.pairs[1]}, 0, false};
  const auto r = pair_rows(first_two, root, rows, "emb.txt");
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0][0], 0);
  EXPECT_EQ(r[0][1], 1);
  EXPECT_EQ(r[1][0], 1);
}

}  // namespace
}  // namespace cuface::eval
