// Identification (face/eval/identification.h, kernels/topk.h): the streaming top-k against a full
// stable sort, the blocked search against brute force, the figures on hand-computed cases, the split's
// rules, and everything on embeddings of real faces against scripts/make_identification_fixture.py
// (numpy, float64 brute force).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>
#include <random>
#include <set>

#include "common/backends.h"
#include "common/source_dir.h"
#include "face/eval/identification.h"
#include "face/eval/npy.h"
#include "kernels/topk.h"

namespace cuface {
namespace {

using eval::Candidates;
using testing::BackendTest;

// Scores on a coarse grid, so a row holds many ties.
Tensor tied_scores(int64_t rows, int64_t columns, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> level(-6, 6);
  Tensor t = Tensor::empty({rows, columns});
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = 0.125f * float(level(rng));
  return t;
}

// The reference: each row's columns stably sorted by descending score, the first k.
void expect_full_sort(const Tensor& scores, int k, const Tensor& best_score, const Tensor& best_index,
                      const std::string& what) {
  const int64_t rows = scores.size(0), columns = scores.size(1);
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = scores.data<float>() + r * columns;
    std::vector<int> order(static_cast<size_t>(columns));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return row[a] > row[b]; });
    for (int slot = 0; slot < k; ++slot) {
      const float got_score = best_score.data<float>()[r * k + slot];
      const int got_index = best_index.data<int32_t>()[r * k + slot];
      if (slot < columns) {
        EXPECT_EQ(got_index, order[size_t(slot)]) << what << " row " << r << " slot " << slot;
        EXPECT_EQ(got_score, row[order[size_t(slot)]]) << what << " row " << r << " slot " << slot;
      } else {  // k > columns: the list ends in unfilled slots
        EXPECT_EQ(got_index, -1) << what << " row " << r << " slot " << slot;
        EXPECT_EQ(got_score, -INFINITY) << what << " row " << r << " slot " << slot;
      }
    }
  }
}

class StreamingTopK : public BackendTest {};

TEST_P(StreamingTopK, EqualsAFullStableSortWithTiesAndKBeyondTheColumns) {
  // The CUDA kernel fills the list slot by slot with block-wide barriers; on the CUDA emulator (a
  // fiber per thread) the whole grid of cases takes minutes, so there it runs 5 rows and merges in
  // blocks of 64 and 300 columns only.
  const bool emulated = device() == Device::CUDA && testing::kEmulatedCuda;
  const int64_t rows = emulated ? 5 : 37, columns = 300;
  const Tensor scores = tied_scores(rows, columns, 5);
  for (int k : {1, 5, 40, 301, 350}) {
    for (int64_t block : {int64_t(1), int64_t(7), int64_t(64), columns}) {
      if (emulated && block < 64) continue;
      Tensor best_score = Tensor::empty({rows, k}, DType::F32, device());
      Tensor best_index = Tensor::empty({rows, k}, DType::I32, device());
      clear_top_k(ctx(), best_score, best_index);
      for (int64_t c0 = 0; c0 < columns; c0 += block) {
        const int64_t width = std::min(block, columns - c0);
        // The block as its own contiguous matrix, as a search's GEMM writes it.
        Tensor part = Tensor::empty({rows, width});
        for (int64_t r = 0; r < rows; ++r)
          std::copy_n(scores.data<float>() + r * columns + c0, width, part.data<float>() + r * width);
        merge_top_k(ctx(), part.to(device()), c0, best_score, best_index);
      }
      expect_full_sort(scores, k, best_score.to(Device::CPU), best_index.to(Device::CPU),
                       "k " + std::to_string(k) + " block " + std::to_string(block));
    }
  }
}

TEST_P(StreamingTopK, NaNAndMinusInfinityNeverEnter) {
  Tensor scores = Tensor::empty({1, 4});
  const float values[4] = {NAN, -INFINITY, 0.5f, NAN};
  std::copy_n(values, 4, scores.data<float>());
  Tensor best_score = Tensor::empty({1, 3}, DType::F32, device());
  Tensor best_index = Tensor::empty({1, 3}, DType::I32, device());
  clear_top_k(ctx(), best_score, best_index);
  merge_top_k(ctx(), scores.to(device()), 10, best_score, best_index);
  const Tensor index = best_index.to(Device::CPU);
  EXPECT_EQ(index.data<int32_t>()[0], 12);
  EXPECT_EQ(index.data<int32_t>()[1], -1);
  EXPECT_EQ(index.data<int32_t>()[2], -1);
}

CUFACE_ON_EVERY_BACKEND(StreamingTopK);

TEST(StreamingTopK, MisshapenListsAreOneClearError) {
  Context ctx;
  Tensor scores = Tensor::zeros({2, 5}), best_score = Tensor::zeros({3, 4}), best_index = Tensor::zeros({3, 4}, DType::I32);
  try {
    merge_top_k(ctx, scores, 0, best_score, best_index);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("scores must be f32 [3, n]"), std::string::npos) << e.what();
  }
}

// Unit rows of `dim` dimensions drawn around `centres` random directions (a few images per person).
Tensor clustered_rows(int64_t rows, int64_t dim, int centres, double noise, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> gauss;
  std::vector<double> centre(size_t(centres) * size_t(dim));
  for (double& v : centre) v = gauss(rng);
  Tensor t = Tensor::empty({rows, dim});
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < dim; ++j)
      t.data<float>()[i * dim + j] = float(centre[size_t(i % centres) * size_t(dim) + size_t(j)] + noise * gauss(rng));
  return eval::normalised_rows(t);
}

class GallerySearch : public BackendTest {};

// Blocks of gallery rows and batches of probes of awkward sizes give each probe the k rows that a
// float64 brute force ranks best (scores to f32 accuracy; where two scores are closer than that,
// either order is right).
TEST_P(GallerySearch, BlockedSearchEqualsBruteForce) {
  const int64_t dim = 24;
  const Tensor gallery = clustered_rows(203, dim, 203, 0.0, 1);
  const Tensor probes = clustered_rows(29, dim, 11, 1.0, 2);
  eval::SearchOptions options;
  options.block_rows = 17;
  options.probe_batch = 8;
  const int k = 6;
  const Candidates found = eval::search_gallery(ctx(), gallery.to(device()), probes, k, options);
  ASSERT_EQ(found.probes, 29);
  for (int64_t p = 0; p < found.probes; ++p) {
    std::vector<double> score(size_t(gallery.size(0)));
    for (int64_t g = 0; g < gallery.size(0); ++g)
      for (int64_t j = 0; j < dim; ++j)
        score[size_t(g)] += double(probes.data<float>()[p * dim + j]) * double(gallery.data<float>()[g * dim + j]);
    std::vector<int> order(score.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return score[size_t(a)] > score[size_t(b)]; });
    for (int r = 0; r < k; ++r) {
      EXPECT_NEAR(found.score_at(p, r), score[size_t(order[size_t(r)])], 1e-5) << p << " " << r;
      const double here = score[size_t(order[size_t(r)])];
      const bool clear_of_neighbours = std::abs(here - score[size_t(order[size_t(r + 1)])]) > 1e-5 &&
                                       (r == 0 || std::abs(here - score[size_t(order[size_t(r - 1)])]) > 1e-5);
      if (clear_of_neighbours) {
        EXPECT_EQ(found.row_at(p, r), order[size_t(r)]) << p << " " << r;
      }
    }
  }
}

CUFACE_ON_EVERY_BACKEND(GallerySearch);

TEST(GallerySearch, ProbesOfAnotherSizeAreOneClearError) {
  Context ctx;
  try {
    eval::search_gallery(ctx, Tensor::zeros({4, 8}), Tensor::zeros({2, 6}), 3);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("probes of 6 dimensions against a gallery of 8"), std::string::npos) << e.what();
  }
}

TEST(IdentityTemplates, NormalisedMeanOfNormalisedRows) {
  // Identity 0: (3, 4) and (0, 2) -> unit (0.6, 0.8) and (0, 1) -> mean (0.3, 0.9) -> /sqrt(0.9).
  // Identity 1: (-5, 0) alone -> (-1, 0).
  Tensor rows = Tensor::empty({3, 2});
  const float values[6] = {3, 4, -5, 0, 0, 2};
  std::copy_n(values, 6, rows.data<float>());
  const std::vector<int> identity{0, 1, 0};
  const Tensor t = eval::identity_templates(rows, identity, 2);
  const double length = std::sqrt(0.3 * 0.3 + 0.9 * 0.9);
  EXPECT_NEAR(t.data<float>()[0], 0.3 / length, 1e-7);
  EXPECT_NEAR(t.data<float>()[1], 0.9 / length, 1e-7);
  EXPECT_FLOAT_EQ(t.data<float>()[2], -1.0f);
  EXPECT_FLOAT_EQ(t.data<float>()[3], 0.0f);
  const std::vector<int> missing{0, 0, 0};
  EXPECT_THROW(eval::identity_templates(rows, missing, 2), Error);  // identity 1 has no row
}

// Candidate lists written by hand: probe p's rows and scores.
Candidates hand_candidates(const std::vector<std::vector<std::pair<int, float>>>& lists) {
  Candidates c;
  c.probes = int64_t(lists.size());
  c.k = int(lists[0].size());
  for (const auto& list : lists)
    for (const auto& [row, score] : list) {
      c.row.push_back(row);
      c.score.push_back(score);
    }
  return c;
}

// Five mated probes (truth 0..2) and four non-mated ones over a gallery of three templates.
//   probe  truth  candidates (row: score)    mate rank
//   0      0      0: .9  1: .5  2: .1        1
//   1      1      0: .8  1: .7  2: .2        2
//   2      2      2: .6  0: .3  1: .2        1
//   3      0      1: .4  2: .35 0: .3        3
//   4      1      1: .45 0: .2  2: .1        1
//   5..8   -1     best scores .5, .55, .3, .65
// CMC: rank 1: probes 0, 2, 4 = 3/5; rank 2: + probe 1 = 4/5; rank 3: + probe 3 = 5/5.
// Open set, 4 non-mated probes, best scores sorted .65 .55 .5 .3:
//   FPIR .25 -> 1 false positive allowed -> t = .55 (2nd highest): non-mated above t: .65 -> FPIR .25;
//     mated answered rightly above .55: probe 0 (.9), probe 2 (.6) -> TPIR 2/5.
//   FPIR .5 -> 2 allowed -> t = .5: non-mated above: .65 .55 -> .5; rightly answered above .5: 0, 2 -> 2/5.
//   FPIR .75 -> 3 allowed -> t = .3: rightly answered above .3: 0, 2, 4 (.45) -> 3/5; FPIR .75.
//   FPIR 1 -> 4 allowed -> t = -inf: 3/5 (probe 1's best candidate is another person); FPIR 1.
//   FPIR .2 -> floor(.8) = 0 false positives allowed: unsupported.
TEST(IdentificationMetrics, HandComputedCmcAndTpirAtFpir) {
  const Candidates c = hand_candidates({{{0, .9f}, {1, .5f}, {2, .1f}},
                                        {{0, .8f}, {1, .7f}, {2, .2f}},
                                        {{2, .6f}, {0, .3f}, {1, .2f}},
                                        {{1, .4f}, {2, .35f}, {0, .3f}},
                                        {{1, .45f}, {0, .2f}, {2, .1f}},
                                        {{0, .5f}, {1, .1f}, {2, .0f}},
                                        {{2, .55f}, {1, .1f}, {0, .0f}},
                                        {{1, .3f}, {0, .1f}, {2, .0f}},
                                        {{1, .65f}, {0, .1f}, {2, .0f}}});
  const std::vector<int> truth{0, 1, 2, 0, 1, -1, -1, -1, -1};
  EXPECT_EQ(eval::mate_rank(c, 3, 0), 3);
  EXPECT_EQ(eval::mate_rank(c, 5, -1), 0);
  const std::vector<double> targets{0.25, 0.5, 0.75, 1.0, 0.2};
  const eval::IdentificationResult r = eval::evaluate_identification(c, truth, targets);
  EXPECT_EQ(r.mated, 5);
  EXPECT_EQ(r.non_mated, 4);
  ASSERT_EQ(r.cmc.size(), 3u);
  EXPECT_DOUBLE_EQ(r.cmc[0], 0.6);
  EXPECT_DOUBLE_EQ(r.cmc[1], 0.8);
  EXPECT_DOUBLE_EQ(r.cmc[2], 1.0);
  const double expected_tpir[4] = {0.4, 0.4, 0.6, 0.6}, expected_fpir[4] = {0.25, 0.5, 0.75, 1.0};
  const double expected_threshold[4] = {double(.55f), double(.5f), double(.3f), -INFINITY};
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(r.open_set[size_t(i)].supported) << i;
    EXPECT_DOUBLE_EQ(r.open_set[size_t(i)].tar, expected_tpir[i]) << i;
    EXPECT_DOUBLE_EQ(r.open_set[size_t(i)].far, expected_fpir[i]) << i;
    EXPECT_EQ(r.open_set[size_t(i)].threshold, expected_threshold[i]) << i;
  }
  EXPECT_FALSE(r.open_set[4].supported);
  EXPECT_TRUE(std::isnan(r.open_set[4].tar));
}

TEST(IdentificationMetrics, WithoutNonMatedProbesTheOpenSetIsUnsupported) {
  const Candidates c = hand_candidates({{{0, .9f}}, {{1, .2f}}});
  const std::vector<int> truth{0, 0};
  const std::vector<double> targets{0.1};
  const eval::IdentificationResult r = eval::evaluate_identification(c, truth, targets);
  EXPECT_DOUBLE_EQ(r.cmc[0], 0.5);
  EXPECT_FALSE(r.open_set[0].supported);
}

// Identities: 0 has 4 images, 1 has 3, 2 has 1, 3 has 2, 4 has 5; one unlabelled image (-1).
TEST(IdentificationSplit, FollowsTheProtocolsRules) {
  const std::vector<int> identity{0, 1, 0, 2, 3, 0, 4, 1, 4, 4, -1, 0, 3, 4, 1, 4};
  const eval::IdentificationSplit s = eval::split_for_identification(identity, 2, 0.25, 7);
  // Eligible (more than 2 images): 0, 1, 4; round(0.25 x 3) = 1 of them is unknown.
  ASSERT_EQ(s.enrolled.size(), 2u);
  EXPECT_TRUE(std::is_sorted(s.enrolled.begin(), s.enrolled.end()));
  for (int id : s.enrolled) EXPECT_TRUE(id == 0 || id == 1 || id == 4) << id;
  ASSERT_EQ(s.gallery_images.size(), 4u);  // two per enrolled identity, by template row
  for (size_t i = 0; i < s.gallery_images.size(); ++i) {
    EXPECT_EQ(s.gallery_row[i], int(i / 2));
    EXPECT_EQ(identity[size_t(s.gallery_images[i])], s.enrolled[i / 2]);
  }
  // Every labelled image is in exactly one of gallery and probes; probes in image order.
  std::set<int64_t> seen(s.gallery_images.begin(), s.gallery_images.end());
  EXPECT_TRUE(std::is_sorted(s.probe_images.begin(), s.probe_images.end()));
  for (size_t i = 0; i < s.probe_images.size(); ++i) {
    EXPECT_TRUE(seen.insert(s.probe_images[i]).second);
    const int id = identity[size_t(s.probe_images[i])];
    const auto row = std::find(s.enrolled.begin(), s.enrolled.end(), id);
    EXPECT_EQ(s.probe_truth[i], row == s.enrolled.end() ? -1 : int(row - s.enrolled.begin())) << i;
  }
  EXPECT_EQ(seen.size(), identity.size() - 1);  // all but the unlabelled one
  // The same seed gives the same split; some other seed enrols others or picks other gallery images.
  const eval::IdentificationSplit again = eval::split_for_identification(identity, 2, 0.25, 7);
  EXPECT_EQ(again.gallery_images, s.gallery_images);
  bool differs = false;
  for (uint64_t seed = 8; seed < 20 && !differs; ++seed)
    differs = eval::split_for_identification(identity, 2, 0.25, seed).gallery_images != s.gallery_images;
  EXPECT_TRUE(differs);
  // Nobody has more than 5 images: nobody can be enrolled with 5 gallery images.
  EXPECT_THROW(eval::split_for_identification(identity, 5, 0.0, 7), Error);
}

// Real faces: embeddings of LFW images by a trained model, with numpy's float64 brute force (see
// scripts/make_identification_fixture.py for how both were made).
TEST(IdentificationLfw, SearchAndFiguresMatchNumpyBruteForce) {
  const nlohmann::json f = nlohmann::json::parse(std::ifstream(testing::fixture_path("identification_lfw.json")));
  const Tensor rows = eval::read_npy(testing::fixture_path("identification_lfw.npy"));
  ASSERT_EQ(rows.size(0), f["rows"].get<int64_t>());
  const std::vector<int64_t> gallery_images = f["gallery_images"], probe_images = f["probe_images"];
  const std::vector<int> gallery_row = f["gallery_row"], truth = f["probe_truth"];
  const int identities = f["identities"];
  auto gather = [&](const std::vector<int64_t>& which) {
    Tensor out = Tensor::empty({int64_t(which.size()), rows.size(1)});
    for (size_t i = 0; i < which.size(); ++i) out.slice(int64_t(i), int64_t(i) + 1).copy_from(rows.slice(which[i], which[i] + 1));
    return out;
  };
  const Tensor templates = eval::identity_templates(gather(gallery_images), gallery_row, identities);
  const Tensor probes = eval::normalised_rows(gather(probe_images));

  // Every probe-template score (this checks the templates too).
  const auto& scores = f["scores"];
  for (size_t p = 0; p < probe_images.size(); ++p)
    for (int t = 0; t < identities; ++t) {
      double dot = 0;
      for (int64_t j = 0; j < rows.size(1); ++j)
        dot += double(probes.data<float>()[int64_t(p) * rows.size(1) + j]) *
               double(templates.data<float>()[int64_t(t) * rows.size(1) + j]);
      EXPECT_NEAR(dot, scores[p][size_t(t)].get<double>(), 1e-6) << p << " " << t;
    }

  Context ctx;
  eval::SearchOptions options;
  options.block_rows = 5;  // identities in three blocks, probes in batches of 16
  options.probe_batch = 16;
  const int k = f["k"];
  const Candidates found = eval::search_gallery(ctx, templates, probes, k, options);
  for (size_t p = 0; p < probe_images.size(); ++p)
    for (int r = 0; r < k; ++r) {
      EXPECT_EQ(found.row_at(int64_t(p), r), f["candidate_rows"][p][size_t(r)].get<int>()) << p << " " << r;
      EXPECT_NEAR(found.score_at(int64_t(p), r), f["candidate_scores"][p][size_t(r)].get<double>(), 1e-6);
    }

  const std::vector<double> targets = f["fpir_targets"];
  const eval::IdentificationResult r = eval::evaluate_identification(found, truth, targets);
  EXPECT_EQ(r.mated, f["mated"].get<int64_t>());
  EXPECT_EQ(r.non_mated, f["non_mated"].get<int64_t>());
  const std::vector<double> cmc = f["cmc"];
  ASSERT_EQ(r.cmc.size(), cmc.size());
  for (size_t i = 0; i < cmc.size(); ++i) EXPECT_DOUBLE_EQ(r.cmc[i], cmc[i]) << "rank " << i + 1;
  for (size_t i = 0; i < targets.size(); ++i) {
    const nlohmann::json& expected = f["open_set"][i];
    ASSERT_EQ(r.open_set[i].supported, expected["supported"].get<bool>()) << targets[i];
    if (!r.open_set[i].supported) continue;
    EXPECT_DOUBLE_EQ(r.open_set[i].tar, expected["tpir"].get<double>()) << targets[i];
    EXPECT_DOUBLE_EQ(r.open_set[i].far, expected["fpir"].get<double>()) << targets[i];
    EXPECT_NEAR(r.open_set[i].threshold, expected["threshold"].get<double>(), 1e-6) << targets[i];
  }
}

}  // namespace
}  // namespace cuface
