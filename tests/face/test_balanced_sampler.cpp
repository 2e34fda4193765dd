// Class-balanced batches (face/loader/balanced_sampler.h): every batch is P classes x K records,
// the sequence depends only on (seed, epoch), an epoch covers every class, and the loader and the
// trainer use it.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <map>
#include <set>

#include "face/loader/balanced_sampler.h"
#include "face/loader/loader.h"
#include "face/train/trainer.h"
#include "train_fixtures.h"

namespace cuface {
namespace {

// 10 classes, class c with c + 1 records (class 0, 1 and 2 have fewer than K = 4), interleaved with
// unlabelled records.
std::vector<int32_t> uneven_classes() {
  std::vector<int32_t> classes;
  for (int round = 0; round < 10; ++round)
    for (int c = 0; c < 10; ++c) {
      if (round <= c) classes.push_back(c);
      if (round % 3 == 0) classes.push_back(-1);
    }
  return classes;
}

// Checks that `batch` (record indices) holds exactly P classes with K records each, distinct records
// where the class has at least K; returns the classes.
std::set<int32_t> check_balanced(const std::vector<int64_t>& batch, const std::vector<int32_t>& class_of, int p,
                                 int k) {
  std::map<int32_t, std::vector<int64_t>> by_class;
  for (int64_t record : batch) {
    EXPECT_GE(class_of[size_t(record)], 0) << "an unlabelled record was drawn";
    by_class[class_of[size_t(record)]].push_back(record);
  }
  EXPECT_EQ(by_class.size(), size_t(p));
  for (const auto& [c, records] : by_class) {
    EXPECT_EQ(records.size(), size_t(k)) << "class " << c;
    const int64_t available = std::count(class_of.begin(), class_of.end(), c);
    if (available >= k) {
      EXPECT_EQ(std::set<int64_t>(records.begin(), records.end()).size(), size_t(k)) << "class " << c;
    }
  }
  std::set<int32_t> classes;
  for (const auto& [c, records] : by_class) classes.insert(c);
  return classes;
}

TEST(BalancedSampler, EveryBatchIsPClassesOfKAndAnEpochCoversEveryClass) {
  const std::vector<int32_t> class_of = uneven_classes();
  const int p = 3, k = 4;
  BalancedSampler sampler(class_of, p, k, 11);
  EXPECT_EQ(sampler.classes(), 10);
  EXPECT_EQ(sampler.samples_per_epoch(), 4 * p * k);  // ceil(10 / 3) batches
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    const std::vector<int64_t> sequence = sampler(epoch);
    ASSERT_EQ(int64_t(sequence.size()), sampler.samples_per_epoch());
    std::set<int32_t> seen;
    for (size_t b = 0; b < sequence.size(); b += p * k) {
      const auto classes = check_balanced({sequence.begin() + b, sequence.begin() + b + p * k}, class_of, p, k);
      seen.insert(classes.begin(), classes.end());
    }
    EXPECT_EQ(seen.size(), 10u) << "epoch " << epoch;
  }
}

TEST(BalancedSampler, DependsOnlyOnSeedAndEpoch) {
  const std::vector<int32_t> class_of = uneven_classes();
  BalancedSampler a(class_of, 3, 4, 11), b(class_of, 3, 4, 11), other_seed(class_of, 3, 4, 12);
  EXPECT_EQ(a(5), b(5));
  EXPECT_EQ(a(5), a(5));
  EXPECT_NE(a(5), a(6));
  EXPECT_NE(a(5), other_seed(5));
}

TEST(BalancedSampler, EachRankGetsBalancedBatches) {
  const std::vector<int32_t> class_of = uneven_classes();
  const int p = 2, k = 3, world = 2;
  BalancedSampler sampler(class_of, p, k, 3, world);
  const std::vector<int64_t> sequence = sampler(0);
  EXPECT_EQ(sequence.size() % size_t(world * p * k), 0u);
  std::set<int32_t> seen;
  for (int rank = 0; rank < world; ++rank) {
    std::vector<int64_t> mine;  // the loader's split: positions rank, rank + W, ...
    for (size_t i = size_t(rank); i < sequence.size(); i += world) mine.push_back(sequence[i]);
    for (size_t b = 0; b < mine.size(); b += p * k) {
      const auto classes = check_balanced({mine.begin() + b, mine.begin() + b + p * k}, class_of, p, k);
      seen.insert(classes.begin(), classes.end());
    }
  }
  EXPECT_EQ(seen.size(), 10u);
}

TEST(BalancedSampler, RejectsMoreClassesPerBatchThanExist) {
  EXPECT_THROW(BalancedSampler(uneven_classes(), 11, 2, 1), Error);
}

// Through the loader, as the trainer plugs it in: each batch's identity labels are P x K.
TEST(BalancedSampler, LoaderBatchesArePIdentitiesOfK) {
  testing::ScratchDir dir;
  const std::string pack = testing::synthetic_pack(dir);  // 12 people x 6 images
  PackSet packs({pack});
  std::vector<int32_t> identity;
  for (int64_t i = 0; i < packs.size(); ++i) identity.push_back(packs.record(i).labels.identity);
  auto sampler = std::make_shared<BalancedSampler>(identity, 4, 3, 5);
  LoaderOptions options;
  options.packs = {pack};
  options.batch_size = 12;
  options.workers = 2;
  options.image_size = 32;
  options.sampler = [sampler](int64_t epoch) { return (*sampler)(epoch); };
  options.samples_per_epoch = sampler->samples_per_epoch();
  Loader loader(options);
  ASSERT_EQ(loader.steps_per_epoch(), 3);
  const std::vector<int64_t> expected = (*sampler)(0);
  for (int64_t step = 0; step < loader.steps_per_epoch(); ++step) {
    Batch batch = loader.next();
    std::map<int32_t, int> count;
    for (int64_t i = 0; i < batch.size(); ++i) {
      ++count[batch.identity.data<int32_t>()[i]];
      EXPECT_EQ(batch.record.data<int32_t>()[i], expected[size_t(step * 12 + i)]);
    }
    EXPECT_EQ(count.size(), 4u);
    for (const auto& [id, n] : count) EXPECT_EQ(n, 3) << "identity " << id;
  }
}

// The trainer: --batch follows P x K, a different --batch is refused naming the flags.
TEST(BalancedSampler, TrainerUsesItAndRefusesAConflictingBatch) {
  testing::ScratchDir dir;
  const std::string pack = testing::synthetic_pack(dir);
  TrainConfig config = testing::tiny_config(pack, dir / "run", 2);
  config.ids_per_batch = 4;
  config.imgs_per_id = 3;
  try {
    train(config, false);  // batch 8 != 12
    FAIL() << "a --batch differing from P x K was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--ids-per-batch"), std::string::npos) << e.what();
  }
  config.batch = 12;
  EXPECT_EQ(train(config, false).steps, 2);
}

// On the command line --batch follows P x K; a --batch that differs is one clear error; --help says
// how small classes are sampled.
TEST(BalancedSampler, CommandLineBatchFollowsPTimesK) {
  testing::ScratchDir dir;
  const std::string pack = testing::synthetic_pack(dir);
  auto run = [&](const std::string& args) {
    const std::string command = cuface::testing::cuface_binary() + " train " + args + " > " + (dir / "out").string() +
                                " 2> " + (dir / "err").string();
    const int raw = std::system(command.c_str());
    return WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  };
  const std::string base = "FR --train-sets " + pack + " --arch tiny --input-size 32 --steps 1 --device cpu " +
                           "--workers 1 --margin cosface --margin-s 16 --ids-per-batch 4 --imgs-per-id 3 --out ";
  ASSERT_EQ(run(base + (dir / "run").string()), 0) << testing::slurp(dir / "err");
  EXPECT_EQ(nlohmann::json::parse(testing::slurp(dir / "run" / "config.json")).at("batch"), 12);
  EXPECT_NE(run(base + (dir / "bad").string() + " --batch 8"), 0);
  EXPECT_NE(testing::slurp(dir / "err").find("--ids-per-batch"), std::string::npos) << testing::slurp(dir / "err");
  ASSERT_EQ(run("--help"), 0);
  for (const char* text : {"--ids-per-batch", "--imgs-per-id", "with replacement", "--accumulate", "--multi-mode"})
    EXPECT_NE(testing::slurp(dir / "out").find(text), std::string::npos) << text;
}

}  // namespace
}  // namespace cuface
