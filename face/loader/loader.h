// The prefetching loader: memory-mapped packs in, batches of u8 NHWC images (pinned host memory)
// and labels out, in a fixed order that depends only on the seed.
//
// Order. Epoch e visits the records in philox_permutation(N, seed, e) (or the sequence of
// LoaderOptions::sampler). With world_size W, rank r
// takes positions r, r + W, r + 2W, ... of that permutation, so ranks see disjoint records; when W
// does not divide N the permutation is extended by wrapping around (every rank gets ceil(N / W)
// samples, a few records twice), as PyTorch's DistributedSampler does. A rank's samples are cut
// into batches of batch_size; drop_last drops the short last batch of each epoch.
//
// Work. `workers` threads claim samples one at a time, in batch order, and each decodes, augments
// (face/loader/augment.h) and writes its sample straight into its row of a ring of `prefetch`
// pinned batch buffers. A sample's random numbers come from Philox(seed, epoch << 32 | record), so
// the batches are bit-identical whatever the number of workers and timing.
//
// Use:
//   Loader loader(options);
//   for (;;) { Batch batch = loader.next(); ... }   // batches in order; a batch holds its buffer
//   LoaderPosition saved = loader.position();         // store in the checkpoint
//   loader.seek(saved);                               // after a restart: the same batches follow
// A batch's buffer returns to the ring when the last copy of the Batch is destroyed; hold fewer
// than `prefetch` batches at a time (BatchUploader holds two). A worker's error (corrupt record,
// undecodable image) is rethrown by next() naming the shard and record. The destructor stops the
// workers at any point of an epoch.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/tensor.h"
#include "face/loader/augment.h"
#include "face/pack/pack.h"

namespace cuface {

struct LoaderOptions {
  std::vector<std::string> packs;  // PREFIXes, read as one set (face/pack/pack.h: PackSet)
  int batch_size = 128;
  int workers = 4;
  int prefetch = 4;                // batch buffers in the ring
  int image_size = 112;            // output side; stored images of another size are resized
  AugmentOptions augment;
  uint64_t seed = 0;
  int rank = 0;
  int world_size = 1;
  bool drop_last = true;
  bool check_crc = true;           // verify each record's CRC before use (about 2 GB/s)
  // Hook for other orders (class-balanced batches, curricula): returns epoch e's sequence of record
  // indices, the same for the same e on every rank; it replaces the shuffled permutation. Ranks
  // and batches are cut from it as from the permutation. Its length is samples_per_epoch (0: the
  // number of records).
  std::function<std::vector<int64_t>(int64_t epoch)> sampler;
  int64_t samples_per_epoch = 0;
};

// The next batch next() will return: epoch and step (batch) within the epoch.
struct LoaderPosition {
  int64_t epoch = 0;
  int64_t step = 0;
};

struct Batch {
  Tensor images;    // u8 [n, size, size, 3], RGB, pinned host memory
  Tensor identity;  // i32 [n], -1 unknown
  Tensor gender;    // i32 [n], 0 male, 1 female, -1 unknown
  Tensor age;       // i32 [n], -1 unknown
  Tensor record;    // i32 [n], each row's record index in the PackSet
  int64_t epoch = 0;
  int64_t step = 0;
  std::shared_ptr<void> lease;  // keeps the ring buffer out of the workers' hands while alive
  int64_t size() const { return images.defined() ? images.size(0) : 0; }
};

class Loader {
 public:
  explicit Loader(const LoaderOptions& options);  // opens the packs, starts at epoch 0, step 0
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  Batch next();
  LoaderPosition position() const;
  // Continues from `position` (as returned by position()). All batches must have been released.
  void seek(const LoaderPosition& position);

  int64_t steps_per_epoch() const;
  int64_t samples_per_rank() const;  // per epoch
  const PackSet& packs() const;
  const LoaderOptions& options() const;

 private:
  struct State;
  void start(int64_t first_batch);
  void stop();
  std::shared_ptr<State> state_;
};

}  // namespace cuface
