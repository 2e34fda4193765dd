// `cuface gallery`, `identify` and `eval-id` as a user runs them, on a tiny model saved by the test and
// synthetic faces. The reference path is independent of the commands' own: `cuface embed` rows,
// normalised, averaged and ranked here in double precision.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include "face/eval/identification.h"
#include "face/eval/npy.h"
#include "face/eval/pair_sampler.h"
#include "face/image/detect.h"
#include "face/model/face_model.h"
#include "face/train/checkpoint.h"
#include "face/train/demo.h"
#include "cuface_program.h"
#include "data.h"

namespace cuface {
namespace {

namespace fs = std::filesystem;
using testing::cuface;
using testing::Outcome;
using testing::ScratchDir;
using testing::slurp;

constexpr int kSize = 32;

// A tiny model with a `dim`-d embedding saved at dir/name.
std::string save_tiny_model(const ScratchDir& dir, const std::string& name, int64_t dim, uint64_t seed) {
  FaceModelOptions o;
  o.arch = "tiny";
  o.embedding_size = dim;
  o.identities = 5;
  o.seed = seed;
  FaceModel model(o);
  model.set_training(false);
  const std::string file = (dir / name).string();
  save_model(file, model, {{"arch", "tiny"}});
  return file;
}

// Rows normalised in double: what every comparison here is made of.
std::vector<std::vector<double>> unit_rows(const Tensor& rows) {
  std::vector<std::vector<double>> out;
  for (int64_t i = 0; i < rows.size(0); ++i) {
    std::vector<double> row(rows.data<float>() + i * rows.size(1), rows.data<float>() + (i + 1) * rows.size(1));
    const double length = std::sqrt(std::inner_product(row.begin(), row.end(), row.begin(), 0.0));
    for (double& v : row) v /= length;
    out.push_back(row);
  }
  return out;
}

// Each folder's template from `cuface embed` rows: the normalised mean of its normalised rows.
std::map<std::string, std::vector<double>> templates_by_folder(const eval::Embeddings& e) {
  std::map<std::string, std::vector<double>> sum;
  const auto unit = unit_rows(e.matrix);
  for (size_t i = 0; i < unit.size(); ++i) {
    auto& s = sum[fs::path(e.paths[i]).parent_path().filename().string()];
    s.resize(unit[i].size());
    for (size_t j = 0; j < s.size(); ++j) s[j] += unit[i][j];
  }
  for (auto& [name, s] : sum) {
    const double length = std::sqrt(std::inner_product(s.begin(), s.end(), s.begin(), 0.0));
    for (double& v : s) v /= length;
  }
  return sum;
}

void expect_templates(const fs::path& gallery, const std::map<std::string, std::vector<double>>& expected) {
  const eval::Embeddings stored = eval::read_embeddings(gallery / "templates.npy");
  ASSERT_EQ(stored.paths.size(), expected.size());
  for (size_t t = 0; t < stored.paths.size(); ++t) {
    ASSERT_TRUE(expected.contains(stored.paths[t])) << stored.paths[t];
    const std::vector<double>& want = expected.at(stored.paths[t]);
    for (size_t j = 0; j < want.size(); ++j)
      EXPECT_NEAR(stored.matrix.data<float>()[int64_t(t) * stored.matrix.size(1) + int64_t(j)], want[j], 1e-6)
          << stored.paths[t] << " " << j;
  }
}

struct EnrolledFaces {
  ScratchDir dir;
  std::string model, faces;
  eval::Embeddings rows;  // `cuface embed` of every face
  EnrolledFaces() {
    faces = (dir / "faces").string();
    write_synthetic_faces(faces, 5, 3, kSize, 4);
    model = save_tiny_model(dir, "m.safetensors", 16, 7);
    const Outcome embed = cuface(dir, "embed --model " + model + " --images " + faces + " --out " +
                                          (dir / "emb.npy").string() + " --input-size 32 --device cpu");
    EXPECT_EQ(embed.status, 0) << embed.err;
    rows = eval::read_embeddings(dir / "emb.npy");
  }
  std::string common() const { return " --model " + model + " --input-size 32 --device cpu"; }
};

TEST(GalleryCommand, TemplatesAreNormalisedMeansOfTheEmbedRowsAndIdentifyRanksThem) {
  EnrolledFaces s;
  const fs::path g = s.dir / "G";
  const Outcome made = cuface(s.dir, "gallery --images " + s.faces + " --out " + g.string() + s.common());
  ASSERT_EQ(made.status, 0) << made.err;
  EXPECT_NE(made.out.find("gallery: 15 images enrolled (5 new people), 0 skipped -> " + g.string() +
                          ": 5 people, 15 images, 16-d templates (64 bytes each)"),
            std::string::npos)
      << made.out;
  for (const char* file : {"gallery.json", "templates.npy", "templates.txt", "images.npy", "images.txt"})
    EXPECT_TRUE(fs::exists(g / file)) << file;
  for (const auto& entry : fs::directory_iterator(s.dir.path()))
    EXPECT_EQ(entry.path().string().find(".tmp"), std::string::npos) << entry.path();
  const nlohmann::json manifest = nlohmann::json::parse(slurp(g / "gallery.json"));
  EXPECT_EQ(manifest["embedding_size"], 16);
  EXPECT_EQ(manifest["bytes_per_row"], 64);
  EXPECT_EQ(manifest["model"]["file"], s.model);
  const auto templates = templates_by_folder(s.rows);
  expect_templates(g, templates);

  // Two enrolled faces as photos: their candidates are the templates ranked by the cosine with the
  // photo's normalised embed row.
  const std::vector<size_t> photos{1, 7};
  std::string paths;
  for (size_t p : photos) paths += " " + s.rows.paths[p];
  const Outcome found = cuface(s.dir, "identify --gallery " + g.string() + paths + s.common() +
                                          " --format json --top-k 3 --threshold -1");
  ASSERT_EQ(found.status, 0) << found.err;
  EXPECT_NE(found.err.find("identify: 2 photos against 5 people"), std::string::npos) << found.err;
  const nlohmann::json answer = nlohmann::json::parse(found.out);
  const auto unit = unit_rows(s.rows.matrix);
  for (size_t i = 0; i < photos.size(); ++i) {
    std::vector<std::pair<double, std::string>> ranked;
    for (const auto& [name, t] : templates)
      ranked.emplace_back(std::inner_product(t.begin(), t.end(), unit[photos[i]].begin(), 0.0), name);
    std::sort(ranked.rbegin(), ranked.rend());
    const nlohmann::json& result = answer["results"][i];
    EXPECT_EQ(result["photo"], s.rows.paths[photos[i]]);
    ASSERT_EQ(result["candidates"].size(), 3u);
    for (size_t r = 0; r < 3; ++r) {
      EXPECT_EQ(result["candidates"][r]["identity"], ranked[r].second) << i << " " << r;
      EXPECT_NEAR(result["candidates"][r]["score"].get<double>(), ranked[r].first, 1e-5) << i << " " << r;
    }
    EXPECT_EQ(result["identity"], ranked[0].second);  // threshold -1: the best candidate is the answer
  }

  // A threshold above every score: "unknown", in the table too.
  const Outcome strict = cuface(s.dir, "identify --gallery " + g.string() + paths + s.common() + " --threshold 1");
  ASSERT_EQ(strict.status, 0) << strict.err;
  EXPECT_NE(strict.out.find(s.rows.paths[1] + ": unknown ("), std::string::npos) << strict.out;
  EXPECT_NE(strict.out.find("0 identified, 2 unknown (cosine threshold 1.0000 from --threshold)"), std::string::npos)
      << strict.out;
}

TEST(GalleryCommand, AddExtendsItAndEqualsAGalleryMadeAtOnce) {
  EnrolledFaces s;
  // First the images of three people, then --add the whole folder: the rest join.
  std::string first;
  for (const std::string& path : s.rows.paths)
    if (path.find("person3") == std::string::npos && path.find("person4") == std::string::npos) first += path + "\n";
  const fs::path list = s.dir.write("first.txt", first);
  const fs::path g = s.dir / "G";
  ASSERT_EQ(cuface(s.dir, "gallery --images " + list.string() + " --out " + g.string() + s.common()).status, 0);
  const Outcome added = cuface(s.dir, "gallery --add --images " + s.faces + " --out " + g.string() + s.common());
  ASSERT_EQ(added.status, 0) << added.err;
  EXPECT_NE(added.out.find("gallery: 6 images enrolled (2 new people), 0 skipped, 9 already enrolled"), std::string::npos)
      << added.out;
  expect_templates(g, templates_by_folder(s.rows));
  const eval::Embeddings images = eval::read_embeddings(g / "images.npy");
  EXPECT_EQ(images.paths.size(), 15u);

  // Without --add an existing gallery is left alone.
  const Outcome again = cuface(s.dir, "gallery --images " + s.faces + " --out " + g.string() + s.common());
  EXPECT_EQ(again.status, 1);
  EXPECT_NE(again.err.find("--out " + g.string() + " already exists (--add extends it)"), std::string::npos) << again.err;
}

TEST(GalleryCommand, AnotherModelMissingGalleryAndFacelessPhotosAreOneClearError) {
  EnrolledFaces s;
  const fs::path g = s.dir / "G";
  ASSERT_EQ(cuface(s.dir, "gallery --images " + s.faces + " --out " + g.string() + s.common()).status, 0);
  const std::string photo = " " + s.rows.paths[0];

  const std::string other_size = save_tiny_model(s.dir, "eight.safetensors", 8, 7);
  const Outcome size = cuface(s.dir, "identify --gallery " + g.string() + photo + " --model " + other_size +
                                         " --input-size 32");
  EXPECT_EQ(size.status, 1);
  EXPECT_NE(size.err.find("gallery " + g.string() + " holds 16-d embeddings of " + s.model + ", but --model " +
                          other_size + " gives 8-d ones"),
            std::string::npos)
      << size.err;
  const Outcome add_size = cuface(s.dir, "gallery --add --images " + s.faces + " --out " + g.string() + " --model " +
                                             other_size + " --input-size 32");
  EXPECT_EQ(add_size.status, 1);
  EXPECT_NE(add_size.err.find("gives 8-d ones"), std::string::npos) << add_size.err;

  const std::string same_size = save_tiny_model(s.dir, "other.safetensors", 16, 8);
  const Outcome other = cuface(s.dir, "identify --gallery " + g.string() + photo + " --model " + same_size +
                                          " --input-size 32");
  EXPECT_EQ(other.status, 1);
  EXPECT_NE(other.err.find("--model " + same_size + " is another model"), std::string::npos) << other.err;

  const Outcome missing = cuface(s.dir, "identify --gallery " + (s.dir / "nowhere").string() + photo + s.common());
  EXPECT_EQ(missing.status, 1);
  EXPECT_NE(missing.err.find("gallery " + (s.dir / "nowhere").string() + " not found"), std::string::npos)
      << missing.err;

  // --align with a landmark file that does not list the photo: no face to identify, the photo named.
  const fs::path landmarks = s.dir.write("landmarks.txt", "elsewhere/x.jpg 1 2 3 4 5 6 7 8 9 10\n");
  const Outcome unlisted = cuface(s.dir, "identify --gallery " + g.string() + photo + s.common() + " --align " +
                                             landmarks.string());
  EXPECT_EQ(unlisted.status, 1);
  EXPECT_NE(unlisted.err.find("'" + s.rows.paths[0] + "': no landmarks in " + landmarks.string()), std::string::npos)
      << unlisted.err;
  EXPECT_TRUE(unlisted.out.empty()) << unlisted.out;

  // --detect on a photo without a face (where cuface has dlib and its landmark model).
  if (!face_detection_available() || !fs::exists(kDefaultLandmarkModel))
    GTEST_SKIP() << "no dlib face detection in this build (or no landmark model): --detect not checked";
  const Outcome faceless = cuface(s.dir, "identify --gallery " + g.string() + photo + s.common() + " --detect");
  EXPECT_EQ(faceless.status, 1);
  EXPECT_NE(faceless.err.find("'" + s.rows.paths[0] + "': no face found"), std::string::npos) << faceless.err;
}

// eval-id's report equals the library's figures on the same rows and split, from precomputed
// embeddings and from the model embedding the folder itself.
TEST(EvalIdCommand, ReportFollowsTheSplitSearchAndFigures) {
  EnrolledFaces s;
  const std::string flags = " --seed 3 --unknown-fraction 0.4 --ranks 5";
  const Outcome from_rows = cuface(s.dir, "eval-id --embeddings " + (s.dir / "emb.npy").string() + flags +
                                              " --report " + (s.dir / "r.json").string() + " --cmc " +
                                              (s.dir / "cmc.csv").string());
  ASSERT_EQ(from_rows.status, 0) << from_rows.err;
  EXPECT_NE(from_rows.out.find("eval-id: " + (s.dir / "emb.npy").string() + ", 3 people enrolled: rank-1 "),
            std::string::npos)
      << from_rows.out;
  const nlohmann::json report = nlohmann::json::parse(slurp(s.dir / "r.json"));

  std::vector<std::string> people;
  for (const std::string& path : s.rows.paths) people.push_back(fs::path(path).parent_path().filename().string());
  const std::vector<int> identity = eval::identity_numbers(people);
  const eval::IdentificationSplit split = eval::split_for_identification(identity, 1, 0.4, 3);
  ASSERT_EQ(split.enrolled.size(), 3u);  // 5 people, round(0.4 x 5) = 2 unknown
  auto gather = [&](const std::vector<int64_t>& which) {
    Tensor out = Tensor::empty({int64_t(which.size()), s.rows.matrix.size(1)});
    for (size_t i = 0; i < which.size(); ++i)
      out.slice(int64_t(i), int64_t(i) + 1).copy_from(s.rows.matrix.slice(which[i], which[i] + 1));
    return out;
  };
  Context ctx;
  const eval::Candidates found = eval::search_gallery(
      ctx, eval::identity_templates(gather(split.gallery_images), split.gallery_row, 3),
      eval::normalised_rows(gather(split.probe_images)), 5);
  const std::vector<double> targets{0.1, 0.01};
  const eval::IdentificationResult expected = eval::evaluate_identification(found, split.probe_truth, targets);
  EXPECT_EQ(report["mated_probes"], expected.mated);
  EXPECT_EQ(report["non_mated_probes"], expected.non_mated);
  EXPECT_EQ(report["mated_probes"].get<int64_t>() + report["non_mated_probes"].get<int64_t>() + 3, 15);
  for (size_t r = 0; r < 5; ++r) EXPECT_DOUBLE_EQ(report["cmc"][r].get<double>(), expected.cmc[r]) << r;
  EXPECT_DOUBLE_EQ(report["rank1"].get<double>(), expected.cmc[0]);
  EXPECT_DOUBLE_EQ(report["rank5"].get<double>(), expected.cmc[4]);
  // 6 non-mated probes: FPIR 0.1 and 0.01 allow no false positive.
  EXPECT_EQ(expected.non_mated, 6);
  EXPECT_FALSE(report["open_set"][0]["supported"].get<bool>());
  EXPECT_NE(from_rows.out.find("TPIR at FPIR 0.1 not supported (6 non-mated probes allow no false positive)"),
            std::string::npos)
      << from_rows.out;
  EXPECT_EQ(slurp(s.dir / "cmc.csv").substr(0, 24), "rank,identification_rate");

  const Outcome from_model = cuface(s.dir, "eval-id --images " + s.faces + s.common() + flags + " --report " +
                                               (s.dir / "m.json").string());
  ASSERT_EQ(from_model.status, 0) << from_model.err;
  const nlohmann::json by_model = nlohmann::json::parse(slurp(s.dir / "m.json"));
  EXPECT_EQ(by_model["cmc"], report["cmc"]);
  EXPECT_EQ(by_model["mated_probes"], report["mated_probes"]);

  const Outcome nothing = cuface(s.dir, "eval-id --seed 3");
  EXPECT_EQ(nothing.status, 1);
  EXPECT_NE(nothing.err.find("give --embeddings, or --model with --images or --pack"), std::string::npos) << nothing.err;
}

}  // namespace
}  // namespace cuface
