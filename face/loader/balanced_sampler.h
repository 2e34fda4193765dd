// Class-balanced batches (--ids-per-batch P --imgs-per-id K), as the original trained: every batch
// holds P classes with K images of each (FR 30 identities x 5 images; gender 2 x 75; age 7 x 20).
// It plugs into LoaderOptions::sampler; plain shuffling is the loader's default without it.
//
// Epoch e visits every class once: the classes in philox_permutation(C, seed, e) order are cut into
// groups of P, the last group completed from the start of that order. For each class of a group, K
// of its records: a random K-subset when it has at least K, else K draws with replacement (so a
// class with fewer than K images repeats some of them in a batch). Records whose class is negative
// (unlabelled) are never drawn. The draws come from one Philox stream per epoch, so an epoch's
// sequence depends only on (seed, e).
//
// With world_size W the loader gives rank r positions r, r + W, ... of the sequence; the sampler
// interleaves W balanced batches at a time so that each rank's batch is itself P x K (the number of
// batches per epoch is rounded up to a multiple of W by continuing round the class order).
#pragma once
#include <cstdint>
#include <vector>

namespace cuface {

class BalancedSampler {
 public:
  // class_of_record[i]: the class of record i (identity, gender or age bin), negative = none.
  BalancedSampler(const std::vector<int32_t>& class_of_record, int classes_per_batch, int images_per_class,
                  uint64_t seed, int world_size = 1);

  std::vector<int64_t> operator()(int64_t epoch) const;  // record indices, samples_per_epoch() of them
  int64_t samples_per_epoch() const { return batches_ * int64_t(per_batch_) * per_class_; }
  int64_t classes() const { return int64_t(records_of_class_.size()); }  // classes with records

 private:
  std::vector<std::vector<int64_t>> records_of_class_;  // non-empty classes only
  int per_batch_, per_class_, world_size_;
  uint64_t seed_;
  int64_t batches_;  // balanced batches per epoch, all ranks together
};

}  // namespace cuface
