// normalise_u8: the CPU kernel against a float64 reference, the CUDA kernel against the CPU one.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "common/backends.h"
#include "kernels/image.h"

namespace cuface {
namespace {

Tensor random_pixels(const Shape& shape, uint64_t seed) {
  Tensor t = Tensor::empty(shape, DType::U8);
  std::mt19937_64 rng(seed);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<uint8_t>()[i] = uint8_t(rng());
  return t;
}

float element(const Tensor& t, int64_t i) {
  return t.dtype() == DType::F32 ? t.data<float>()[i] : to_float(t.data<bf16>()[i]);
}

TEST(NormaliseU8, CpuMatchesFloat64Reference) {
  Context ctx(Device::CPU);
  const Tensor x = random_pixels({3, 5, 7, 3}, 1);  // odd sizes: no multiple of 4
  for (float scale : {kPixelScale, kOriginalPixelScale}) {
    for (DType dtype : {DType::F32, DType::BF16}) {
      Tensor y = Tensor::empty(x.shape(), dtype);
      normalise_u8(ctx, x, y, kPixelMean, scale);
      // bf16 keeps 8 significant bits: rounding errs by up to 2^-8 relative; f32 rounds twice: 2 ulp.
      const double tolerance = dtype == DType::F32 ? 2.5e-7 : 1.0 / 256;
      for (int64_t i = 0; i < x.numel(); ++i) {
        const double want = (double(x.data<uint8_t>()[i]) - 127.5) * double(scale);
        ASSERT_NEAR(element(y, i), want, tolerance * std::abs(want) + 1e-12) << i;
      }
    }
  }
  // The defaults: (x - 127.5) / 128 is exact in float, so the ends are exactly +-127.5/128.
  Tensor ends = Tensor::empty({2}, DType::U8);
  ends.data<uint8_t>()[0] = 0;
  ends.data<uint8_t>()[1] = 255;
  Tensor y = Tensor::empty({2}, DType::F32);
  normalise_u8(ctx, ends, y);
  EXPECT_EQ(y.data<float>()[0], -127.5f / 128);
  EXPECT_EQ(y.data<float>()[1], 127.5f / 128);
}

TEST(NormaliseU8, RejectsWrongTypes) {
  Context ctx(Device::CPU);
  Tensor x = Tensor::empty({4}, DType::F32), y = Tensor::empty({4}, DType::F32);
  EXPECT_THROW(normalise_u8(ctx, x, y), Error);
  Tensor pixels = Tensor::empty({4}, DType::U8), wrong = Tensor::empty({5}, DType::F32);
  EXPECT_THROW(normalise_u8(ctx, pixels, wrong), Error);
}

TEST(NormaliseU8, CudaMatchesCpuBitForBit) {
  CUFACE_REQUIRE_GPU();
  Context cpu(Device::CPU), gpu(Device::CUDA);
  // Slices are taken of the DEVICE tensor: copying a slice to the device would start it aligned.
  //   whole batch: 4-byte loads only;  one 7x7x3 image from row 0: aligned, 147 = 36 * 4 + 3 tail bytes;
  //   row 3 of 7x7x3 images: starts at byte 441, unaligned, so the byte-by-byte path.
  struct Case {
    Tensor source;
    int64_t begin, end;
  };
  const Tensor small = random_pixels({5, 7, 7, 3}, 3);
  for (const Case& k : {Case{random_pixels({16, 112, 112, 3}, 2), 0, 16}, Case{small, 0, 1}, Case{small, 3, 4}}) {
    const Tensor input = k.source.slice(k.begin, k.end);
    const Tensor device_input = k.source.to(Device::CUDA).slice(k.begin, k.end);
    for (DType dtype : {DType::F32, DType::BF16}) {
      Tensor expected = Tensor::empty(input.shape(), dtype);
      normalise_u8(cpu, input, expected, kPixelMean, kOriginalPixelScale);
      Tensor y = Tensor::empty(input.shape(), dtype, Device::CUDA);
      normalise_u8(gpu, device_input, y, kPixelMean, kOriginalPixelScale);
      gpu.synchronize();
      const Tensor got = y.to(Device::CPU);
      ASSERT_EQ(0, std::memcmp(got.raw(), expected.raw(), got.bytes())) << input.str() << " from row " << k.begin;
    }
  }
}

}  // namespace
}  // namespace cuface
