// face/eval/attributes: label sources and the printed confusion matrix.
#include <gtest/gtest.h>

#include "engine/error.h"
#include "face/eval/attributes.h"
#include "scratch_dir.h"

namespace cuface::eval {
namespace {

TEST(Attributes, UtkFaceNames) {
  const auto a = parse_utkface_name("26_1_3_20170104235421282.jpg.chip.jpg");
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->age, 26);
  EXPECT_EQ(a->gender, 1);
  EXPECT_EQ(a->race, 3);
  EXPECT_FALSE(parse_utkface_name("26_2_3_x.jpg").has_value());  // gender is 0 or 1
  EXPECT_FALSE(parse_utkface_name("26_1.jpg").has_value());
  EXPECT_FALSE(parse_utkface_name("x_1_0_y.jpg").has_value());
  EXPECT_FALSE(parse_utkface_name("").has_value());
}

TEST(Attributes, RealUtkFaceNamesParse) {
  const std::filesystem::path dir = std::filesystem::path(CUFACE_SHARED_DATA) / "utkface";
  if (!std::filesystem::is_directory(dir)) GTEST_SKIP() << "shared data not found at " << dir;
  int parsed = 0, total = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (++total > 500) break;
    parsed += parse_utkface_name(entry.path().filename().string()).has_value();
  }
  EXPECT_EQ(parsed, std::min(total, 500));
}

TEST(Attributes, LfwGenderListsDropContradictions) {
  testing::ScratchDir dir;
  const auto male = dir.write("male_names.txt", "A_0001.jpg\nB_0001.jpg\nC_0001.jpg\n");
  const auto female = dir.write("female_names.txt", "D_0001.jpg\r\nB_0001.jpg\n");
  const LfwGender g = read_lfw_gender(male, female);
  EXPECT_EQ(g.contradictory, 1);
  EXPECT_EQ(g.gender_of.size(), 3u);
  EXPECT_EQ(g.gender_of.at("A_0001.jpg"), "male");
  EXPECT_EQ(g.gender_of.at("D_0001.jpg"), "female");
  EXPECT_EQ(g.gender_of.count("B_0001.jpg"), 0u);
  EXPECT_THROW(read_lfw_gender(male, dir / "absent.txt"), Error);
}

TEST(Attributes, ClassTableOrder) {
  const std::vector<std::string> truth{"10", "2", "2", "1"}, predicted{"2", "2", "10", "1"};
  const ClassTable t = make_class_table(truth, predicted);
  EXPECT_TRUE(t.numeric);
  EXPECT_EQ(t.names, (std::vector<std::string>{"1", "2", "10"}));  // by value, not as text
  EXPECT_EQ(t.truth, (std::vector<int>{2, 1, 1, 0}));
  EXPECT_EQ(t.predicted, (std::vector<int>{1, 1, 2, 0}));

  const std::vector<std::string> named{"male", "female"}, guess{"female", "female"};
  const ClassTable g = make_class_table(named, guess, {"male", "female"});
  EXPECT_FALSE(g.numeric);
  EXPECT_EQ(g.truth, (std::vector<int>{0, 1}));
  const std::vector<std::string> odd{"male", "other"};
  EXPECT_THROW(make_class_table(named, odd, {"male", "female"}), Error);
}

TEST(Attributes, ConfusionPrintout) {
  const std::vector<int> truth{0, 0, 0, 1, 1, 2}, predicted{0, 0, 1, 1, 0, 0};
  const ConfusionMatrix m = confusion_matrix(truth, predicted, 4);
  const std::vector<std::string> names{"a", "bb", "ccc", "empty"};
  const std::string text = format_confusion(m, names);
  EXPECT_NE(text.find("confusion matrix (count)"), std::string::npos);
  EXPECT_NE(text.find("66.7%"), std::string::npos);  // a: 2 of 3
  // The class with no samples prints '-' for its rates.
  const size_t empty_row = text.rfind("empty");
  EXPECT_NE(text.find("-", empty_row), std::string::npos);
  EXPECT_EQ(confusion_csv(m, names),
            "true\\predicted,a,bb,ccc,empty\na,2,1,0,0\nbb,1,1,0,0\nccc,1,0,0,0\nempty,0,0,0,0\n");
  const std::vector<std::string> tricky{"x,y", "q\"", "c", "d"};
  EXPECT_EQ(confusion_csv(m, tricky).rfind("true\\predicted,\"x,y\",\"q\"\"\",c,d\n\"x,y\",2,1,0,0\n", 0), 0u);
}

}  // namespace
}  // namespace cuface::eval
