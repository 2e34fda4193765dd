#include "face/loader/balanced_sampler.h"

#include <algorithm>
#include <map>
#include <string>

#include "engine/error.h"
#include "engine/philox.h"

namespace cuface {

BalancedSampler::BalancedSampler(const std::vector<int32_t>& class_of_record, int classes_per_batch,
                                 int images_per_class, uint64_t seed, int world_size)
    : per_batch_(classes_per_batch), per_class_(images_per_class), world_size_(world_size), seed_(seed) {
  CUFACE_CHECK(classes_per_batch >= 1 && images_per_class >= 1,
               "--ids-per-batch and --imgs-per-id must be at least 1");
  CUFACE_CHECK(world_size >= 1, "balanced sampler: world size must be at least 1");
  std::map<int32_t, std::vector<int64_t>> by_class;
  for (size_t i = 0; i < class_of_record.size(); ++i)
    if (class_of_record[i] >= 0) by_class[class_of_record[i]].push_back(int64_t(i));
  for (auto& [label, records] : by_class) records_of_class_.push_back(std::move(records));
  CUFACE_CHECK(classes() >= classes_per_batch, "--ids-per-batch " + std::to_string(classes_per_batch) +
                                                   " exceeds the " + std::to_string(classes()) +
                                                   " labelled classes of the training packs");
  const int64_t groups = (classes() + per_batch_ - 1) / per_batch_;
  batches_ = (groups + world_size_ - 1) / world_size_ * world_size_;
}

std::vector<int64_t> BalancedSampler::operator()(int64_t epoch) const {
  const std::vector<int64_t> class_order = philox_permutation(classes(), seed_, uint64_t(epoch));
  Philox rng(seed_ ^ 0xba1a4cedba1a4cedull, uint64_t(epoch));  // a stream apart from the permutation's
  const int64_t batch_size = int64_t(per_batch_) * per_class_;

  // The balanced batches in order, each P classes x K records.
  std::vector<int64_t> batches;
  batches.reserve(size_t(samples_per_epoch()));
  std::vector<int64_t> pool;
  for (int64_t b = 0; b < batches_; ++b)
    for (int p = 0; p < per_batch_; ++p) {
      const int64_t position = (b * per_batch_ + p) % classes();  // past the end: round to the start
      const std::vector<int64_t>& records = records_of_class_[size_t(class_order[size_t(position)])];
      const uint32_t n = uint32_t(records.size());
      if (n >= uint32_t(per_class_)) {  // a random K-subset: the first K steps of a Fisher-Yates shuffle
        pool = records;
        for (int k = 0; k < per_class_; ++k) {
          std::swap(pool[size_t(k)], pool[size_t(k) + rng.uniform_int(n - uint32_t(k))]);
          batches.push_back(pool[size_t(k)]);
        }
      } else {
        for (int k = 0; k < per_class_; ++k) batches.push_back(records[rng.uniform_int(n)]);
      }
    }

  // Interleave W batches at a time: rank r's j-th sample of group g sits at g*W*PK + j*W + r.
  if (world_size_ == 1) return batches;
  std::vector<int64_t> sequence(batches.size());
  const int64_t group = batch_size * world_size_;
  for (int64_t i = 0; i < int64_t(batches.size()); ++i) {
    const int64_t g = i / group, within = i % group, rank = within / batch_size, j = within % batch_size;
    sequence[size_t(g * group + j * world_size_ + rank)] = batches[size_t(i)];
  }
  return sequence;
}

}  // namespace cuface
