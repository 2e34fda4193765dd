// `cuface eval-fr` and `cuface eval-attr` end to end: the program is run on synthetic files; exit
// codes, messages naming the bad line, and the files it writes are checked.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <sys/wait.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <random>

#include "face/eval/npy.h"
#include "cuface_program.h"

namespace cuface::eval {
namespace {

using testing::ScratchDir;

using testing::cuface;
using testing::Outcome;
using testing::slurp;

// 10 people with 4 images each. Each person's embeddings point along their own axis (plus a little
// noise) and are scaled by arbitrary factors, so after normalisation a same pair is under 0.1 apart
// (squared distance under 0.01, InsightFace's first non-zero threshold) and a different pair about
// sqrt(2): every figure is perfect when the rows are paired and normalised correctly.
void write_synthetic_set(const ScratchDir& dir) {
  const int people = 10, per_person = 4, dim = 16;
  std::mt19937 rng(3);
  std::normal_distribution<float> noise(0.0f, 0.005f);
  std::uniform_real_distribution<float> scale(0.5f, 4.0f);
  Embeddings e{Tensor::empty({people * per_person, dim}), {}};
  float* m = e.matrix.data<float>();
  // Rows in reverse order of the pairs file's mention, so a reader that ignored emb.txt would fail.
  for (int row = 0; row < people * per_person; ++row) {
    const int person = people - 1 - row / per_person, image = per_person - row % per_person;
    const float s = scale(rng);
    for (int k = 0; k < dim; ++k) m[row * dim + k] = s * ((k == person ? 1.0f : 0.0f) + noise(rng));
    char name[64];
    std::snprintf(name, sizeof name, "P%02d/P%02d_%04d.jpg", person, person, image);
    e.paths.push_back(name);
  }
  write_embeddings(dir / "emb.npy", e);

  // LFW layout: 2 folds, each 10 same-person lines then 10 different-person lines.
  std::string pairs = "2 10\n";
  char line[64];
  for (int fold = 0; fold < 2; ++fold) {
    for (int i = 0; i < 10; ++i) {
      std::snprintf(line, sizeof line, "P%02d %d %d\n", i, 1 + 2 * fold, 2 + 2 * fold);
      pairs += line;
    }
    for (int i = 0; i < 10; ++i) {
      std::snprintf(line, sizeof line, "P%02d %d P%02d %d\n", i, 1 + fold, (i + 1 + fold) % 10, 3 + fold);
      pairs += line;
    }
  }
  dir.write("pairs.txt", pairs);
}

TEST(EvalFrCli, SyntheticEmbeddingsEndToEnd) {
  ScratchDir dir;
  write_synthetic_set(dir);
  const std::string out = dir.path().string();
  const Outcome run = cuface(dir, "eval-fr --embeddings " + out + "/emb.npy --pairs " + out + "/pairs.txt --images " + out +
                                  "/images --roc " + out + "/roc.csv --plot " + out + "/roc.svg --report " + out +
                                  "/report.json");
  ASSERT_EQ(run.status, 0) << run.err;
  EXPECT_NE(run.out.find("eval-fr: "), std::string::npos) << run.out;  // the one-line summary
  EXPECT_NE(run.out.find("TAR @ FAR 0.01: not supported"), std::string::npos) << run.out;

  const nlohmann::json report = nlohmann::json::parse(slurp(dir / "report.json"));
  for (const char* key : {"accuracy_mean", "accuracy_std", "threshold", "best_accuracy", "gap", "tar_at_far", "auc",
                          "same_accuracy", "different_accuracy", "folds", "pairs"})
    EXPECT_TRUE(report.contains(key)) << key;
  EXPECT_EQ(report["pairs"], 40);
  EXPECT_EQ(report["same_pairs"], 20);
  EXPECT_EQ(report["folds"], 2);  // the pairs file's own folds
  EXPECT_DOUBLE_EQ(report["accuracy_mean"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(report["accuracy_std"].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(report["best_accuracy"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(report["auc"].get<double>(), 1.0);
  EXPECT_GT(report["gap"].get<double>(), 5.0);
  // Each fold picks the first threshold that separates perfectly: 0.01 (0 accepts nothing).
  EXPECT_NEAR(report["threshold"].get<double>(), 0.01, 1e-12);
  const nlohmann::json& tar = report["tar_at_far"];
  ASSERT_EQ(tar.size(), 3u);  // 1e-1..1e-3; none lower with 20 different pairs
  EXPECT_EQ(tar[0]["supported"], true);
  EXPECT_DOUBLE_EQ(tar[0]["tar"].get<double>(), 1.0);
  EXPECT_EQ(tar[1]["supported"], false);
  EXPECT_TRUE(tar[1]["tar"].is_null());

  const std::string roc = slurp(dir / "roc.csv");
  EXPECT_EQ(roc.rfind("threshold,far,tar\ninf,0,0\n", 0), 0u) << roc.substr(0, 80);
  EXPECT_NE(roc.find(",1,1\n"), std::string::npos);  // ends accepting everything
  const std::string svg = slurp(dir / "roc.svg");
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("False accept rate (FAR, log scale)"), std::string::npos);
  EXPECT_NE(svg.find("True accept rate (TAR)"), std::string::npos);
  EXPECT_NE(svg.find("<polyline"), std::string::npos);
  // Only the inputs and outputs are there: no temporary file was left behind.
  int files = 0;
  for ([[maybe_unused]] const auto& f : std::filesystem::directory_iterator(dir.path())) ++files;
  EXPECT_EQ(files, 8);  // emb.npy emb.txt pairs.txt roc.csv roc.svg report.json stdout stderr
}

TEST(EvalFrCli, ErrorsAndExitCodes) {
  ScratchDir dir;
  write_synthetic_set(dir);
  const std::string out = dir.path().string();
  const std::string emb = " --embeddings " + out + "/emb.npy";

  Outcome run = cuface(dir, "eval-fr" + emb);
  EXPECT_EQ(run.status, 2) << "neither --pairs nor --bin";
  EXPECT_NE(run.err.find("--pairs FILE, --bin FILE or --sample K"), std::string::npos) << run.err;

  run = cuface(dir, "eval-fr" + emb + " --pairs " + out + "/pairs.txt --bin " + out + "/pairs.txt");
  EXPECT_EQ(run.status, 2) << "--pairs and --bin together";

  dir.write("bad_header.txt", "ten 10\nP00 1 2\n");
  run = cuface(dir, "eval-fr" + emb + " --pairs " + out + "/bad_header.txt");
  EXPECT_EQ(run.status, 1);
  EXPECT_NE(run.err.find("bad_header.txt:1: bad header 'ten 10'"), std::string::npos) << run.err;

  dir.write("unknown.txt", "P00/P00_0001.jpg P01/P01_0001.jpg 0\nP00/P00_0001.jpg Q/Q_0001.jpg 0\n");
  run = cuface(dir, "eval-fr" + emb + " --pairs " + out + "/unknown.txt");
  EXPECT_EQ(run.status, 1);
  EXPECT_NE(run.err.find("unknown.txt:2: image Q/Q_0001.jpg is not in " + out + "/emb.txt"), std::string::npos)
      << run.err;

  dir.write("few.txt", "P00/P00_0001.jpg P00/P00_0002.jpg 1\nP00/P00_0001.jpg P01/P01_0001.jpg 0\n");
  run = cuface(dir, "eval-fr" + emb + " --pairs " + out + "/few.txt");
  EXPECT_EQ(run.status, 1);
  EXPECT_NE(run.err.find("at least two different-person pairs"), std::string::npos) << run.err;

  // Four pairs without a folds header: the default 10 folds do not fit, and the message names the flag.
  dir.write("four.txt", "P00/P00_0001.jpg P00/P00_0002.jpg 1\nP01/P01_0001.jpg P01/P01_0002.jpg 1\n"
                        "P00/P00_0001.jpg P01/P01_0001.jpg 0\nP02/P02_0001.jpg P03/P03_0001.jpg 0\n");
  run = cuface(dir, "eval-fr" + emb + " --pairs " + out + "/four.txt");
  EXPECT_EQ(run.status, 1);
  EXPECT_NE(run.err.find("cannot split 4 pairs into 10 folds (--folds K"), std::string::npos) << run.err;
  EXPECT_EQ(cuface(dir, "eval-fr" + emb + " --pairs " + out + "/four.txt --folds 2").status, 0);

  // An output in a missing folder is named before any work (with --model: before embedding).
  run = cuface(dir, "eval-fr" + emb + " --pairs " + out + "/four.txt --folds 2 --plot " + out + "/no/roc.svg");
  EXPECT_EQ(run.status, 1);
  EXPECT_NE(run.err.find("--plot " + out + "/no/roc.svg: folder " + out + "/no does not exist"), std::string::npos)
      << run.err;
  EXPECT_EQ(run.out.find("pairs:"), std::string::npos) << run.out;

  dir.write("corrupt.bin", std::string("\x80\x04]", 3));
  run = cuface(dir, "eval-fr" + emb + " --bin " + out + "/corrupt.bin");
  EXPECT_EQ(run.status, 1);
  EXPECT_NE(run.err.find("corrupt.bin: not an InsightFace verification .bin"), std::string::npos) << run.err;

  // emb.txt names absolute paths; without --images the pairs' names are looked up under the working
  // folder, and the message says where it looked and which flag sets the root.
  std::string absolute_names;
  for (const std::string& path : read_embeddings(dir / "emb.npy").paths) absolute_names += out + "/" + path + "\n";
  dir.write("emb.txt", absolute_names);
  run = cuface(dir, "eval-fr" + emb + " --pairs " + out + "/pairs.txt");
  EXPECT_EQ(run.status, 1);
  EXPECT_NE(run.err.find("is not in " + out + "/emb.txt (looked up as "), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("--images is the folder"), std::string::npos) << run.err;
  EXPECT_EQ(cuface(dir, "eval-fr" + emb + " --pairs " + out + "/pairs.txt --images " + out).status, 0);
}

TEST(EvalFrCli, RepeatedSampling) {
  ScratchDir dir;
  write_synthetic_set(dir);
  const std::string out = dir.path().string();
  const Outcome run = cuface(dir, "eval-fr --embeddings " + out + "/emb.npy --sample 40 --repeat 3 --folds 4 --report " +
                                      out + "/s.json");
  ASSERT_EQ(run.status, 0) << run.err;
  const nlohmann::json report = nlohmann::json::parse(slurp(dir / "s.json"));
  EXPECT_EQ(report["repeats"].size(), 3u);
  EXPECT_EQ(report["repeats"][0]["pairs"], 40);
  EXPECT_EQ(report["repeats"][0]["same_pairs"], 20);
  EXPECT_DOUBLE_EQ(report["summary"]["accuracy_mean"]["mean"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(report["summary"]["auc"]["std"].get<double>(), 0.0);
  EXPECT_TRUE(report["summary"].contains("gap"));
  // The sets differ between repeats (Philox stream r), so the gaps do too.
  EXPECT_NE(report["repeats"][0]["gap"], report["repeats"][1]["gap"]);

  const Outcome too_many = cuface(dir, "eval-fr --embeddings " + out + "/emb.npy --sample 100");
  EXPECT_EQ(too_many.status, 1);
  EXPECT_NE(too_many.err.find("cannot sample 50 distinct same-person pairs"), std::string::npos) << too_many.err;
  const Outcome with_roc = cuface(dir, "eval-fr --embeddings " + out + "/emb.npy --sample 10 --roc " + out + "/r.csv");
  EXPECT_EQ(with_roc.status, 2) << "--roc needs one evaluation, not repeats";
}

// A protocol 4 pickle of (images, issame) as InsightFace writes it: `pairs` pairs of tiny byte strings.
std::string make_bin(const std::vector<bool>& issame) {
  std::string s("\x80\x04]\x94(", 5);
  for (size_t i = 0; i < 2 * issame.size(); ++i) s += std::string("C\x01", 2) + char('a' + i % 26) + "\x94";
  s += "e]\x94(";
  for (bool same : issame) s += same ? "\x88" : "\x89";
  s += "e\x86\x94.";
  return s;
}

TEST(EvalFrCli, InsightFaceBinWithEmbeddingsInFileOrder) {
  ScratchDir dir;
  const int pairs = 20, dim = 8;
  std::vector<bool> issame;
  Tensor m = Tensor::zeros({2 * pairs, dim});
  for (int i = 0; i < pairs; ++i) {
    issame.push_back(i % 2 == 0);
    // Same pairs share an axis, different pairs use two different ones.
    m.data<float>()[(2 * i) * dim + i % dim] = 1.0f;
    m.data<float>()[(2 * i + 1) * dim + (issame.back() ? i % dim : (i + 1) % dim)] = 2.0f;
  }
  dir.write("tiny.bin", make_bin(issame));
  write_npy(dir / "emb.npy", m);
  const std::string out = dir.path().string();
  Outcome run = cuface(dir, "eval-fr --embeddings " + out + "/emb.npy --bin " + out + "/tiny.bin --report " + out +
                            "/r.json");
  ASSERT_EQ(run.status, 0) << run.err;
  const nlohmann::json report = nlohmann::json::parse(slurp(dir / "r.json"));
  EXPECT_EQ(report["pairs"], pairs);
  EXPECT_EQ(report["folds"], 10);
  EXPECT_DOUBLE_EQ(report["accuracy_mean"].get<double>(), 1.0);

  write_npy(dir / "short.npy", Tensor::zeros({5, dim}));
  run = cuface(dir, "eval-fr --embeddings " + out + "/short.npy --bin " + out + "/tiny.bin");
  EXPECT_EQ(run.status, 1);
  EXPECT_NE(run.err.find("has 5 rows but"), std::string::npos) << run.err;
}

TEST(EvalAttrCli, ConfusionFromPredictions) {
  ScratchDir dir;
  // Truth from the folder: cat 3 (2 right), dog 2 (1 right), owl 1 (0 right, predicted cat).
  dir.write("preds.csv",
            "path,predicted\n"
            "x/cat/1.jpg,cat\nx/cat/2.jpg,cat\nx/cat/3.jpg,dog\n"
            "x/dog/1.jpg,dog\nx/dog/2.jpg,cat\n"
            "x/owl/1.jpg,cat\n");
  const std::string out = dir.path().string();
  Outcome run = cuface(dir, "eval-attr --predictions " + out + "/preds.csv --truth folder --csv " + out + "/cm.csv --report " +
                            out + "/r.json");
  ASSERT_EQ(run.status, 0) << run.err;
  EXPECT_EQ(slurp(dir / "cm.csv"), "true\\predicted,cat,dog,owl\ncat,2,1,0\ndog,1,1,0\nowl,1,0,0\n");
  const nlohmann::json r = nlohmann::json::parse(slurp(dir / "r.json"));
  EXPECT_DOUBLE_EQ(r["overall_accuracy"].get<double>(), 3.0 / 6.0);
  EXPECT_DOUBLE_EQ(r["average_accuracy"].get<double>(), (2.0 / 3.0 + 1.0 / 2.0 + 0.0) / 3.0);
  EXPECT_FALSE(r.contains("mae"));  // named classes have no order
  // The printed count matrix is aligned: every row of the block has the same length.
  const size_t start = run.out.find("true \\ predicted");
  ASSERT_NE(start, std::string::npos) << run.out;
  size_t line_end = run.out.find('\n', start);
  const size_t width = line_end - start;
  for (int row = 0; row < 3; ++row) {
    const size_t next = run.out.find('\n', line_end + 1);
    EXPECT_EQ(next - line_end - 1, width) << run.out;
    line_end = next;
  }

  // Ordered (integer) classes from a `true` column: MAE and within-one are reported.
  dir.write("ages.csv", "path,true,predicted\na.jpg,0,0\nb.jpg,1,3\nc.jpg,2,1\nd.jpg,3,3\n");
  run = cuface(dir, "eval-attr --predictions " + out + "/ages.csv --report " + out + "/a.json");
  ASSERT_EQ(run.status, 0) << run.err;
  const nlohmann::json a = nlohmann::json::parse(slurp(dir / "a.json"));
  EXPECT_DOUBLE_EQ(a["mae"].get<double>(), (0 + 2 + 1 + 0) / 4.0);
  EXPECT_DOUBLE_EQ(a["within_one"].get<double>(), 3.0 / 4.0);
  // Only bins 0, 3 and 6 occur: within-one compares the bins' values, not their places in the table
  // (0 -> 3 is three bins off although the two are neighbouring columns).
  dir.write("gaps.csv", "path,true,predicted\na.jpg,0,3\nb.jpg,0,0\nc.jpg,6,3\nd.jpg,3,3\n");
  run = cuface(dir, "eval-attr --predictions " + out + "/gaps.csv --report " + out + "/g.json");
  ASSERT_EQ(run.status, 0) << run.err;
  const nlohmann::json g = nlohmann::json::parse(slurp(dir / "g.json"));
  EXPECT_DOUBLE_EQ(g["mae"].get<double>(), (3 + 0 + 3 + 0) / 4.0);
  EXPECT_DOUBLE_EQ(g["within_one"].get<double>(), 2.0 / 4.0);

  dir.write("bad.csv", "file,guess\na.jpg,cat\n");
  run = cuface(dir, "eval-attr --predictions " + out + "/bad.csv");
  EXPECT_EQ(run.status, 1);
  EXPECT_NE(run.err.find("bad.csv:1: the header must name the columns 'path' and 'predicted'"), std::string::npos)
      << run.err;
  dir.write("utk.csv", "path,predicted\nnot_a_utk.jpg,male\n");
  run = cuface(dir, "eval-attr --predictions " + out + "/utk.csv --truth utkface-gender");
  EXPECT_EQ(run.status, 1);
  EXPECT_NE(run.err.find("utk.csv:2: 'not_a_utk.jpg' is not a UTKFace name"), std::string::npos) << run.err;

  // Folders that are not classes (every image in one "images" folder) used to score 0%, silently.
  dir.write("flat.csv", "path,predicted\nimages/1.jpg,male\nimages/2.jpg,female\n");
  run = cuface(dir, "eval-attr --predictions " + out + "/flat.csv --truth folder");
  EXPECT_EQ(run.status, 1) << run.out;
  EXPECT_NE(run.err.find("--truth folder: no image's folder is one of the predicted classes (folders: 'images'; "
                         "predicted: 'female', 'male')"),
            std::string::npos)
      << run.err;
}

}  // namespace
}  // namespace cuface::eval
