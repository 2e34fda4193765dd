// The prefetching loader: coverage per epoch across workers and ranks, determinism, augmentation,
// resume, errors and shutdown; and the upload/normalise step on every backend.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <set>

#include "common/backends.h"
#include "data.h"
#include "engine/error.h"
#include "face/loader/loader.h"
#include "face/loader/upload.h"
#include "face/pack/packer.h"
#include "kernels/gemm.h"

namespace cuface {
namespace {

using testing::ScratchDir;

LoaderOptions pattern_options(const std::string& prefix, int batch, int workers) {
  LoaderOptions o;
  o.packs = {prefix};
  o.batch_size = batch;
  o.workers = workers;
  o.prefetch = 3;
  o.image_size = 8;
  o.augment.flip = false;
  o.seed = 42;
  return o;
}

std::vector<int32_t> rows(const Tensor& t) { return std::vector<int32_t>(t.data<int32_t>(), t.data<int32_t>() + t.numel()); }

// Everything a batch carries, for exact comparisons.
struct Snapshot {
  std::vector<uint8_t> pixels;
  std::vector<int32_t> identity, gender, age, record;
  int64_t epoch, step;
  bool operator==(const Snapshot& o) const {
    return pixels == o.pixels && identity == o.identity && gender == o.gender && age == o.age && record == o.record &&
           epoch == o.epoch && step == o.step;
  }
};
Snapshot snapshot(const Batch& b) {
  const uint8_t* p = b.images.data<uint8_t>();
  return {std::vector<uint8_t>(p, p + b.images.numel()), rows(b.identity), rows(b.gender), rows(b.age), rows(b.record),
          b.epoch, b.step};
}
std::vector<Snapshot> take(Loader& loader, int count) {
  std::vector<Snapshot> out;
  for (int i = 0; i < count; ++i) out.push_back(snapshot(loader.next()));
  return out;
}

TEST(Loader, EveryRecordExactlyOncePerEpochAcrossWorkersAndRanks) {
  ScratchDir dir;
  testing::write_pattern_pack(dir / "p", 60, 7, 8);
  const int world = 3;
  std::vector<std::unique_ptr<Loader>> ranks;
  for (int r = 0; r < world; ++r) {
    LoaderOptions o = pattern_options(dir / "p", 7, 3);
    o.rank = r;
    o.world_size = world;
    o.drop_last = false;
    ranks.push_back(std::make_unique<Loader>(o));
  }
  ASSERT_EQ(ranks[0]->samples_per_rank(), 20);
  ASSERT_EQ(ranks[0]->steps_per_epoch(), 3);  // 7 + 7 + 6
  std::vector<int32_t> previous_order;
  for (int epoch = 0; epoch < 3; ++epoch) {
    std::vector<int> seen(60, 0);
    std::vector<int32_t> order;
    for (int r = 0; r < world; ++r)
      for (int step = 0; step < 3; ++step) {
        const Batch b = ranks[size_t(r)]->next();
        EXPECT_EQ(b.epoch, epoch);
        EXPECT_EQ(b.step, step);
        EXPECT_EQ(b.size(), step < 2 ? 7 : 6);
        for (int i = 0; i < b.size(); ++i) {
          const int32_t record = b.record.data<int32_t>()[i];
          ASSERT_TRUE(record >= 0 && record < 60);
          ++seen[size_t(record)];
          order.push_back(record);
          // The row holds that record's pixels and labels.
          EXPECT_EQ(b.images.data<uint8_t>()[size_t(i) * 8 * 8 * 3], uint8_t(record));
          EXPECT_EQ(b.identity.data<int32_t>()[i], record % 7);
          EXPECT_EQ(b.gender.data<int32_t>()[i], record % 2);
          EXPECT_EQ(b.age.data<int32_t>()[i], 20 + record);
        }
      }
    EXPECT_EQ(seen, std::vector<int>(60, 1)) << "epoch " << epoch;
    EXPECT_NE(order, previous_order) << "epoch " << epoch << " repeats the previous order";
    previous_order = order;
  }
}

TEST(Loader, SameSeedSameBatchesWhateverTheWorkers) {
  ScratchDir dir;
  testing::write_pattern_pack(dir / "p", 50, 5, 8);
  LoaderOptions o = pattern_options(dir / "p", 8, 1);
  o.augment.flip = true;
  o.augment.scale_jitter = 0.1f;
  o.augment.shift_jitter = 0.05f;
  o.augment.colour_jitter = 0.2f;
  Loader one(o);
  o.workers = 4;
  Loader four(o);
  const std::vector<Snapshot> a = take(one, 15), b = take(four, 15);  // 2.5 epochs of 6 steps
  EXPECT_TRUE(a == b);
  o.seed = 43;
  Loader other(o);
  const std::vector<Snapshot> c = take(other, 15);
  EXPECT_NE(a[0].record, c[0].record);
}

TEST(Loader, FlipMirrorsExactlyAndAboutHalfTheTime) {
  ScratchDir dir;
  testing::write_pattern_pack(dir / "p", 64, 4, 8);
  LoaderOptions o = pattern_options(dir / "p", 16, 2);
  o.augment.flip = true;
  Loader loader(o);
  int flipped = 0;
  for (int step = 0; step < 4; ++step) {
    const Batch b = loader.next();
    for (int i = 0; i < b.size(); ++i) {
      const Image expected = testing::pattern_image(b.record.data<int32_t>()[i], 8);
      const uint8_t* got = b.images.data<uint8_t>() + size_t(i) * 8 * 8 * 3;
      if (std::memcmp(got, expected.pixels.data(), expected.pixels.size()) == 0) continue;
      ++flipped;
      for (int y = 0; y < 8; ++y)
        for (int x = 0; x < 8; ++x)
          for (int c = 0; c < 3; ++c) ASSERT_EQ(got[(y * 8 + x) * 3 + c], expected.row(y)[(7 - x) * 3 + c]);
    }
  }
  EXPECT_GT(flipped, 16);  // of 64; binomial(64, 1/2) lies in 17..47 with probability > 0.9999
  EXPECT_LT(flipped, 48);
}

TEST(Loader, ResumeFromAPositionGivesTheSameBatches) {
  ScratchDir dir;
  testing::write_pattern_pack(dir / "p", 40, 4, 8);
  LoaderOptions o = pattern_options(dir / "p", 6, 3);  // 6 steps per epoch
  o.augment.flip = true;
  Loader first(o);
  take(first, 5);
  const LoaderPosition saved = first.position();
  EXPECT_EQ(saved.epoch, 0);
  EXPECT_EQ(saved.step, 5);
  const std::vector<Snapshot> expected = take(first, 9);  // crosses into epoch 2

  Loader resumed(o);
  take(resumed, 2);
  resumed.seek(saved);
  EXPECT_EQ(resumed.position().step, 5);
  EXPECT_TRUE(take(resumed, 9) == expected);
  EXPECT_THROW(resumed.seek({0, 6}), Error);
  const Batch held = resumed.next();
  EXPECT_THROW(resumed.seek(saved), Error);  // batches still held
}

TEST(Loader, ASamplerReplacesThePermutation) {
  ScratchDir dir;
  testing::write_pattern_pack(dir / "p", 12, 3, 8);
  LoaderOptions o = pattern_options(dir / "p", 4, 2);
  o.samples_per_epoch = 8;  // e.g. a class-balanced epoch: records of identity e % 3, repeated
  o.sampler = [](int64_t epoch) {
    std::vector<int64_t> order;
    for (int k = 0; k < 8; ++k) order.push_back(int64_t(epoch % 3 + 3 * (k % 4)));
    return order;
  };
  Loader loader(o);
  EXPECT_EQ(loader.steps_per_epoch(), 2);
  for (int64_t epoch = 0; epoch < 3; ++epoch)
    for (int step = 0; step < 2; ++step) {
      const Batch b = loader.next();
      for (int i = 0; i < 4; ++i) EXPECT_EQ(b.record.data<int32_t>()[i], epoch % 3 + 3 * i);
      EXPECT_EQ(b.identity.data<int32_t>()[0], epoch % 3);
    }
  o.sampler = [](int64_t) { return std::vector<int64_t>{0, 1, 2}; };  // wrong length
  Loader wrong(o);
  EXPECT_THROW(wrong.next(), Error);
}

TEST(Loader, StoredImagesOfAnotherSizeAreResized) {
  ScratchDir dir;
  testing::write_pattern_pack(dir / "p", 12, 3, 16);
  LoaderOptions o = pattern_options(dir / "p", 4, 2);
  o.image_size = 8;
  Loader loader(o);
  const Batch b = loader.next();
  ASSERT_EQ(b.images.shape(), (Shape{4, 8, 8, 3}));
  // Green is the x ramp 0..255 over 16 columns; halved, column x samples source 2x + 0.5.
  for (int x = 0; x < 8; ++x)
    EXPECT_NEAR(b.images.data<uint8_t>()[(3 * 8 + x) * 3 + 1], (2 * x + 0.5) * 17, 1.0) << x;
}

TEST(Loader, WorkerErrorsReachTheConsumerNamingTheRecord) {
  ScratchDir dir;
  testing::write_pattern_pack(dir / "p", 20, 4, 8);
  const std::string path = shard_path(dir / "p", 0, 1);
  std::vector<uint8_t> bytes = read_file(path);
  {
    const Shard shard(path);
    const uint8_t* base = shard.record(0).data - (kShardHeaderBytes + kRecordPrefixBytes + kRecordFixedBytes +
                                                  shard.record(0).source.size());
    bytes[size_t(shard.record(13).data - base) + 5] ^= 0x20;
  }
  testing::write_bytes(path, bytes);
  LoaderOptions o = pattern_options(dir / "p", 5, 3);
  Loader loader(o);
  try {
    for (int i = 0; i < 8; ++i) loader.next();
    ADD_FAILURE() << "the corrupt record was delivered";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("record 13 (pattern/13)"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("CRC mismatch"), std::string::npos) << e.what();
  }
  EXPECT_THROW(loader.next(), Error);  // the error stays
}

TEST(Loader, UndecodableImageIsAnError) {
  ScratchDir dir;
  {
    ShardWriter writer(shard_path(dir / "p", 0, 1), 0, 1);
    const std::vector<uint8_t> jpeg = read_file(testing::fixture_path("image/synthetic_baseline.jpg"));
    writer.add({0, -1, -1}, "good.jpg", Encoding::Jpeg, 72, 56, 3, jpeg.data(), jpeg.size());
    writer.add({0, -1, -1}, "broken.jpg", Encoding::Jpeg, 72, 56, 3, jpeg.data(), 40);
    writer.finish();
    testing::write_sidecar(dir / "p", 2, 1);
  }
  LoaderOptions o = pattern_options(dir / "p", 2, 2);
  o.image_size = 32;
  Loader loader(o);
  try {
    loader.next();
    ADD_FAILURE() << "an undecodable record was delivered";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("broken.jpg"), std::string::npos) << e.what();
  }
}

TEST(Loader, ShutsDownMidEpochAndBatchesOutliveIt) {
  ScratchDir dir;
  testing::write_pattern_pack(dir / "p", 200, 4, 8);
  Batch kept;
  {
    Loader loader(pattern_options(dir / "p", 10, 4));
    kept = loader.next();
    loader.next();
  }  // workers are mid-epoch, some waiting for a free buffer
  EXPECT_EQ(kept.size(), 10);
  EXPECT_EQ(kept.images.data<uint8_t>()[0], uint8_t(kept.record.data<int32_t>()[0]));
}

TEST(Loader, HoldingEveryBufferIsAnErrorNotAHang) {
  ScratchDir dir;
  testing::write_pattern_pack(dir / "p", 40, 4, 8);
  Loader loader(pattern_options(dir / "p", 4, 2));  // prefetch 3
  std::vector<Batch> held;
  for (int i = 0; i < 3; ++i) held.push_back(loader.next());
  EXPECT_THROW(loader.next(), Error);
  held.erase(held.begin());
  EXPECT_EQ(loader.next().step, 3);
}

TEST(Loader, BadOptionsAreRefused) {
  ScratchDir dir;
  testing::write_pattern_pack(dir / "p", 10, 2, 8);
  LoaderOptions o = pattern_options(dir / "p", 11, 1);  // drop_last with 10 records
  EXPECT_THROW(Loader{o}, Error);
  o = pattern_options(dir / "p", 2, 1);
  o.rank = 2;
  o.world_size = 2;
  EXPECT_THROW(Loader{o}, Error);
  o = pattern_options(dir / "missing", 2, 1);
  EXPECT_THROW(Loader{o}, Error);
}

TEST(Loader, RealLfwJpegPackDecodesInto112Batches) {
  CUFACE_REQUIRE_SHARED_DATA("lfw");
  ScratchDir dir;
  testing::fs::create_directory(dir / "tree");
  for (const char* person : {"Aaron_Peirsol", "Abdullah_Gul", "Adam_Sandler", "Adrien_Brody"})
    testing::fs::create_directory_symlink(testing::shared_data(std::string("lfw/images/") + person),
                                          testing::fs::path(dir / "tree") / person);
  PackOptions pack;
  pack.input = dir / "tree";
  pack.out = dir / "lfw";
  pack.landmarks = testing::shared_data("lfw/landmarks5.txt");
  pack.jobs = 2;
  pack_images(pack);
  LoaderOptions o;
  o.packs = {dir / "lfw"};
  o.batch_size = 8;
  o.workers = 2;
  o.augment.flip = false;
  Loader loader(o);
  const Pack& packed = *loader.packs().packs()[0];
  for (int step = 0; step < 3; ++step) {
    const Batch b = loader.next();
    ASSERT_EQ(b.images.shape(), (Shape{8, 112, 112, 3}));
    for (int i = 0; i < 8; ++i) {
      const RecordView r = packed.record(b.record.data<int32_t>()[i]);
      Image image;
      std::string error;
      ASSERT_TRUE(decode_image(r.data, r.size, image, error));
      ASSERT_EQ(0, std::memcmp(b.images.data<uint8_t>() + size_t(i) * 112 * 112 * 3, image.pixels.data(), image.pixels.size()));
      EXPECT_EQ(b.identity.data<int32_t>()[i], r.labels.identity);
    }
  }
}

// Upload and normalise: CPU straight from the pinned buffer, CUDA through the copy stream.
class Upload : public testing::BackendTest {};

TEST_P(Upload, PipelinedBatchesMatchTheDefinition) {
  ScratchDir dir;
  testing::write_pattern_pack(dir / "p", 30, 5, 8);
  LoaderOptions o = pattern_options(dir / "p", 4, 2);
  o.drop_last = false;  // 30 = 7 x 4 + 2: a short last batch on the way
  o.augment.flip = true;
  Loader loader(o);
  Loader twin(o);  // the same batches, for the expected values
  for (DType dtype : {DType::F32, DType::BF16}) {
    BatchUploader uploader(ctx(), {dtype, kPixelMean, kPixelScale});
    uploader.stage(loader.next());
    for (int step = 0; step < 9; ++step) {
      const DeviceBatch got = uploader.take();
      if (step < 8) uploader.stage(loader.next());  // copy the next batch while this one is checked
      const Batch expected = twin.next();
      ASSERT_EQ(got.step, expected.step);
      ASSERT_EQ(got.images.shape(), expected.images.shape());
      const Tensor images = got.images.to(Device::CPU), identity = got.identity.to(Device::CPU);
      for (int64_t i = 0; i < expected.images.numel(); ++i) {
        const float want = (float(expected.images.data<uint8_t>()[i]) - 127.5f) / 128.0f;
        const float have = dtype == DType::F32 ? images.data<float>()[i] : to_float(images.data<bf16>()[i]);
        ASSERT_EQ(have, dtype == DType::F32 ? want : to_float(to_bf16(want))) << i;
      }
      EXPECT_EQ(rows(identity), rows(expected.identity));
      EXPECT_EQ(rows(got.age.to(Device::CPU)), rows(expected.age));
    }
  }
}

TEST_P(Upload, OriginalScaleIsAnOption) {
  ScratchDir dir;
  testing::write_pattern_pack(dir / "p", 8, 2, 8);
  Loader loader(pattern_options(dir / "p", 4, 1));
  const Batch b = loader.next();
  const DeviceBatch d = to_device_normalised(ctx(), b, {DType::F32, kPixelMean, kOriginalPixelScale});
  const Tensor images = d.images.to(Device::CPU);
  for (int64_t i = 0; i < b.images.numel(); i += 5)
    EXPECT_FLOAT_EQ(images.data<float>()[i], (float(b.images.data<uint8_t>()[i]) - 127.5f) / 127.5f);
}

CUFACE_ON_EVERY_BACKEND(Upload);

// On the GPU the host runs ahead of the compute stream. While that stream, held back by GEMMs, has not
// yet normalised batch 0, stage() of batch 2 copies into batch 0's staging buffer, and stage() of
// batch 3 drops batch 1, whose copy was queued behind the same GEMMs (its staging buffer was new, so
// the copy waited for all work on the compute stream); the loader would hand that pinned buffer to a
// worker at once. So the copy must wait for batch 0's normalise, and the drop for batch 1's copy. Each
// batch's lease scribbles over its pixels and labels when dropped, as a worker writing the next image
// would: an early copy or an early drop shows up as wrong values.
TEST(UploadCuda, StagingKeepsPaceWithASlowComputeStream) {
  CUFACE_REQUIRE_GPU();
  Context ctx(Device::CUDA);
  const int64_t rows = 4, side = 8, batches = 6;
  auto pixel = [](int64_t k, int64_t i) { return uint8_t((k * 37 + i * 11) & 255); };
  const int64_t n = testing::kEmulatedCuda ? 64 : 4096;  // each GEMM ~140 GFLOP: milliseconds on an H200
  Tensor a = Tensor::zeros({n, n}, DType::F32, Device::CUDA), c = Tensor::empty({n, n}, DType::F32, Device::CUDA);
  gemm(ctx, false, false, 1.0f, a, a, 0.0f, c);  // cuBLAS's first call may block the host
  for (const bool slow : {false, true}) {  // the first round fills the allocator's cache: no cudaMalloc later
    // Made up front, and their pinned memory kept until the end: cudaHostAlloc and cudaFreeHost may
    // wait for the GPU, which would close the window this test needs.
    std::vector<Batch> staged;
    std::vector<Tensor> pinned;
    for (int64_t k = 0; k < batches; ++k) {
      Batch b;
      b.images = Tensor::empty_pinned({rows, side, side, 3}, DType::U8);
      for (int64_t i = 0; i < b.images.numel(); ++i) b.images.data<uint8_t>()[i] = pixel(k, i);
      for (Tensor* labels : {&b.identity, &b.gender, &b.age}) {
        *labels = Tensor::empty_pinned({rows}, DType::I32);
        for (int64_t i = 0; i < rows; ++i) labels->data<int32_t>()[i] = int32_t(100 * k + i);
      }
      b.step = k;
      const Tensor images = b.images, identity = b.identity;
      b.lease = std::shared_ptr<void>(nullptr, [images, identity](void*) {
        std::memset(images.raw(), 0xAB, images.bytes());
        std::memset(identity.raw(), 0xAB, identity.bytes());
      });
      pinned.insert(pinned.end(), {b.images, b.identity, b.gender, b.age});
      staged.push_back(std::move(b));
    }
    BatchUploader uploader(ctx);
    uploader.stage(std::move(staged[0]));
    if (slow)
      for (int k = 0; k < 8; ++k) gemm(ctx, false, false, 1.0f, a, a, 0.0f, c);
    std::vector<DeviceBatch> got;
    for (int64_t k = 0; k < batches; ++k) {
      got.push_back(uploader.take());
      if (k + 1 < batches) uploader.stage(std::move(staged[size_t(k + 1)]));
    }
    ctx.synchronize();
    for (int64_t k = 0; k < batches; ++k) {
      ASSERT_EQ(got[size_t(k)].step, k);
      const Tensor images = got[size_t(k)].images.to(Device::CPU), identity = got[size_t(k)].identity.to(Device::CPU);
      for (int64_t i = 0; i < images.numel(); ++i)
        ASSERT_EQ(images.data<float>()[i], (float(pixel(k, i)) - 127.5f) / 128.0f) << "batch " << k << ", value " << i;
      for (int64_t i = 0; i < rows; ++i) ASSERT_EQ(identity.data<int32_t>()[i], 100 * k + i) << "batch " << k;
    }
  }
}

}  // namespace
}  // namespace cuface
