// CPU convolution: im2col + SGEMM (the Caffe formulation), in NHWC. 3x3 convolutions with stride 1
// and padding 1 go to Winograd's F(2x2, 3x3) instead (kernels/cpu/winograd.h: 2.25x fewer products).
//
// im2col turns the convolution into one matrix product. Row r = (n, oh, ow) of the column matrix
// holds the KH x KW x C input values under output pixel (oh, ow), in (kh, kw, c) order: exactly the
// order of a filter row in OHWI, so
//
//   forward          y[rows, O]    = col[rows, K] * w[O, K]^T          K = KH * KW * C
//   backward data    dcol[rows, K] = dy[rows, O] * w[O, K]             then col2im: dx = sum of dcol
//   backward filter  dw[O, K]     += dy[rows, O]^T * col[rows, K]
//
// In NHWC a 1x1, stride-1, unpadded convolution needs no im2col at all: x viewed as [N*H*W, C] is
// already the column matrix, and dx is dcol. For other shapes the kw taps of one kh form one
// contiguous run of x (KW * C floats), so a row is built with one copy per kh.
//
// The forward pass never writes the column matrix ("implicit GEMM"): once x is zero-padded, row r is
// KH runs of x, one per kernel row, starting at its receptive field's corner, and sgemm_gathered
// (kernels/gemm.h) multiplies those rows where they lie. Writing col and packing it again costs two
// passes over KH * KW times the input, against 64 or 128 multiply-adds per value in the thin
// products of a ResNet's early stages: the implicit GEMM ran the stem and the 3x3 convolutions of
// ResNet-50's first two stages 25-40% faster (bench/results/implicit.md).
//
// The backward passes build the column matrix, with two levels of splitting to keep it small and
// the GEMMs efficient:
//  - images: the batch is processed in chunks of whole images whose column slab fits a fixed
//    budget, so memory stays bounded for any batch size while each GEMM keeps thousands of rows
//    (the forward pass chunks its padded copy of x the same way);
//  - kernel rows: when K is large, the columns are built and multiplied a slab of kernel rows at a
//    time (the matching columns of w, and of dw, are a column block of the OHWI matrix), each slab's
//    product added to the last. The GEMM then reads a freshly written, contiguous [rows, depth]
//    slab of depth <= kSlabDepth: measured on the 3x3 convolutions of ResNet-50's first stages,
//    this is 20-35% faster than one GEMM over the whole, long-rowed column matrix.
// im2col, col2im and the padding run on all threads; sgemm splits each product across threads.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "engine/allocator.h"
#include "kernels/conv.h"
#include "kernels/cpu/winograd.h"
#include "kernels/gemm.h"

namespace cuface::cpu {

namespace {

struct ConvDims {
  int64_t n, h, w, c;                        // input
  int64_t o, kh, kw;                         // filter
  int64_t oh, ow;                            // output
  int64_t sh, sw, ph, pw;                    // stride, padding
  int64_t k() const { return kh * kw * c; }  // columns of the whole column matrix
  int64_t rows_per_image() const { return oh * ow; }
  bool direct() const { return kh == 1 && kw == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0; }
};

ConvDims conv_dims(const Shape& x, const Shape& w, const Shape& y, const Conv2dGeometry& g) {
  return {x[0], x[1], x[2], x[3], w[0], w[1], w[2], y[1], y[2], g.stride_h, g.stride_w, g.pad_h, g.pad_w};
}

// A slab of kernel rows [kh_begin, kh_begin + kh_count): its columns are [offset, offset + depth) of K.
struct Slab {
  int64_t kh_begin, kh_count, offset, depth;
};

// The deepest a slab gets, unless one kernel row alone is deeper.
constexpr int64_t kSlabDepth = 512;

int64_t kernel_rows_per_slab(const ConvDims& d) {
  return std::clamp<int64_t>(kSlabDepth / std::max<int64_t>(d.kw * d.c, 1), 1, d.kh);
}

// Calls f(slab) for each slab of kernel rows, in order.
template <class F>
void for_each_slab(const ConvDims& d, F f) {
  const int64_t per_slab = kernel_rows_per_slab(d), row_depth = d.kw * d.c;
  for (int64_t kh = 0; kh < d.kh; kh += per_slab) {
    const int64_t count = std::min(per_slab, d.kh - kh);
    f(Slab{kh, count, kh * row_depth, count * row_depth});
  }
}

// The column slab (or padded input) of one chunk. Grows to the largest chunk and stays, so a training
// loop does not allocate (and page-fault) a fresh buffer for every convolution; on huge pages where
// it is large (engine/allocator.h).
float* column_buffer(int64_t floats) {
  static thread_local std::unique_ptr<float, decltype(&std::free)> buffer{nullptr, &std::free};
  static thread_local int64_t capacity = 0;
  if (floats > capacity) {
    const size_t bytes = host_block_size(size_t(floats) * sizeof(float));
    capacity = int64_t(bytes / sizeof(float));
    buffer.reset(static_cast<float*>(allocate_host_block(bytes)));
    CUFACE_CHECK(buffer != nullptr, "conv2d: out of memory for the column buffer");
  }
  return buffer.get();
}

// Images per chunk: as many as keep a buffer of `floats_per_image` each under ~16 MiB, at least one.
int64_t images_per_chunk(const ConvDims& d, int64_t floats_per_image) {
  constexpr int64_t kBufferBudgetFloats = int64_t(4) << 20;
  return std::max<int64_t>(1, std::min(kBufferBudgetFloats / std::max<int64_t>(floats_per_image, 1), d.n));
}
// The backward passes buffer one column slab per image.
int64_t images_per_column_chunk(const ConvDims& d) {
  return images_per_chunk(d, d.rows_per_image() * kernel_rows_per_slab(d) * d.kw * d.c);
}

// Below this many column entries, waking other threads costs more than im2col / col2im itself.
constexpr int64_t kParallelFloats = 1 << 16;

// The valid kernel taps along one axis for output position `out`: input index out * stride - pad + tap
// lies in [0, size) exactly for tap in [begin, end).
struct TapRange {
  int64_t begin, end;
};
TapRange valid_taps(int64_t out, int64_t stride, int64_t pad, int64_t size, int64_t taps) {
  const int64_t first = out * stride - pad;  // input index of tap 0
  return {std::clamp<int64_t>(-first, 0, taps), std::clamp<int64_t>(size - first, 0, taps)};
}

// `images` images of x with a border of ph zero rows and pw zero columns: the forward pass then
// reads every tap in place, the column matrix's padding included (no bounds checks per tap).
void pad_images(const ConvDims& d, const float* x, int64_t images, float* padded) {
  const int64_t hp = d.h + 2 * d.ph, wp = d.w + 2 * d.pw;
#pragma omp parallel for schedule(static) if (images * hp * wp * d.c > kParallelFloats)
  for (int64_t image_row = 0; image_row < images * hp; ++image_row) {
    const int64_t n = image_row / hp, ih = image_row % hp - d.ph;
    float* dst = padded + image_row * wp * d.c;
    if (ih < 0 || ih >= d.h) {
      std::memset(dst, 0, size_t(wp * d.c) * sizeof(float));
      continue;
    }
    std::memset(dst, 0, size_t(d.pw * d.c) * sizeof(float));
    std::memcpy(dst + d.pw * d.c, x + (n * d.h + ih) * d.w * d.c, size_t(d.w * d.c) * sizeof(float));
    std::memset(dst + (d.pw + d.w) * d.c, 0, size_t(d.pw * d.c) * sizeof(float));
  }
}

// Where row (n, oh, ow) of the column matrix starts in `images` padded images: tap (0, 0) of its
// receptive field. Kept between calls and filled on all threads: a fresh vector per call, filled on one
// thread, cost the stem at 224 px batch 8 an 800 KB page-faulting allocation and 100,352 serial steps.
const float* const* receptive_fields(const ConvDims& d, const float* padded, int64_t images) {
  static thread_local std::vector<const float*> starts;
  const int64_t hp = d.h + 2 * d.ph, wp = d.w + 2 * d.pw;
  starts.resize(size_t(images * d.rows_per_image()));
  const float** out = starts.data();
  constexpr int64_t kParallelRows = 4096;  // below this, one thread fills them before another wakes
#pragma omp parallel for schedule(static) if (images * d.rows_per_image() > kParallelRows)
  for (int64_t image_row = 0; image_row < images * d.oh; ++image_row) {
    const int64_t n = image_row / d.oh, oh = image_row % d.oh;
    const float* first = padded + (n * hp + oh * d.sh) * wp * d.c;
    for (int64_t ow = 0; ow < d.ow; ++ow) out[image_row * d.ow + ow] = first + ow * d.sw * d.c;
  }
  return out;
}

// The slab's columns for `images` images from first_image: col[(image - first_image) * OH * OW +
// oh * OW + ow, ((kh - kh_begin) * KW + kw) * C + c], a [rows, depth] matrix.
void im2col(const ConvDims& d, const float* x, int64_t first_image, int64_t images, const Slab& slab, float* col) {
  const int64_t run = d.kw * d.c;
#pragma omp parallel for schedule(static) if (images * d.rows_per_image() * slab.depth > kParallelFloats)
  for (int64_t image_row = 0; image_row < images * d.oh; ++image_row) {
    const int64_t n = first_image + image_row / d.oh, oh = image_row % d.oh;
    const TapRange rows = valid_taps(oh, d.sh, d.ph, d.h, d.kh);
    for (int64_t ow = 0; ow < d.ow; ++ow) {
      float* dst = col + (image_row * d.ow + ow) * slab.depth;
      const TapRange cols = valid_taps(ow, d.sw, d.pw, d.w, d.kw);
      const int64_t iw = ow * d.sw - d.pw + cols.begin;
      for (int64_t kh = slab.kh_begin; kh < slab.kh_begin + slab.kh_count; ++kh, dst += run) {
        if (kh < rows.begin || kh >= rows.end || cols.begin >= cols.end) {
          std::memset(dst, 0, size_t(run) * sizeof(float));
          continue;
        }
        const int64_t ih = oh * d.sh - d.ph + kh;
        const float* src = x + ((n * d.h + ih) * d.w + iw) * d.c;
        std::memset(dst, 0, size_t(cols.begin * d.c) * sizeof(float));
        std::memcpy(dst + cols.begin * d.c, src, size_t((cols.end - cols.begin) * d.c) * sizeof(float));
        std::memset(dst + cols.end * d.c, 0, size_t((d.kw - cols.end) * d.c) * sizeof(float));
      }
    }
  }
}

// The adjoint of im2col for one slab, as a gather: each input pixel sums the column entries that
// copied it, so every dx element is written by one thread, with no races. The first slab
// overwrites dx, later ones add to it.
// Tap kh of output row oh reads input row ih = oh * sh - ph + kh, so ih receives from the oh with
// oh * sh = ih + ph - kh, for the kh that make that divisible and oh in [0, OH).
void col2im(const ConvDims& d, const float* col, int64_t first_image, int64_t images, const Slab& slab, float* dx) {
  const int64_t c_count = d.c;
  const bool first_slab = slab.kh_begin == 0;
#pragma omp parallel for schedule(static) if (images * d.rows_per_image() * slab.depth > kParallelFloats)
  for (int64_t image_row = 0; image_row < images * d.h; ++image_row) {
    const int64_t n = image_row / d.h, ih = image_row % d.h;
    for (int64_t iw = 0; iw < d.w; ++iw) {
      float* __restrict dst = dx + (((first_image + n) * d.h + ih) * d.w + iw) * c_count;
      if (first_slab)
        for (int64_t c = 0; c < c_count; ++c) dst[c] = 0.0f;
      for (int64_t kh = slab.kh_begin; kh < slab.kh_begin + slab.kh_count; ++kh) {
        const int64_t th = ih + d.ph - kh;
        if (th < 0) break;  // larger kh only go further up
        if (th % d.sh != 0 || th / d.sh >= d.oh) continue;
        const int64_t oh = th / d.sh;
        for (int64_t kw = 0; kw < d.kw; ++kw) {
          const int64_t tw = iw + d.pw - kw;
          if (tw < 0) break;
          if (tw % d.sw != 0 || tw / d.sw >= d.ow) continue;
          const float* __restrict src =
              col + ((n * d.oh + oh) * d.ow + tw / d.sw) * slab.depth + ((kh - slab.kh_begin) * d.kw + kw) * c_count;
          for (int64_t c = 0; c < c_count; ++c) dst[c] += src[c];
        }
      }
    }
  }
}

}  // namespace

void conv2d_forward(Context&, const Tensor& x, const Tensor& w, Tensor& y, const Conv2dGeometry& geometry) {
  if (winograd_applies(x.shape(), w.shape(), geometry)) return winograd_forward(x, w, y);
  const ConvDims d = conv_dims(x.shape(), w.shape(), y.shape(), geometry);
  const int64_t k = d.k(), hp = d.h + 2 * d.ph, wp = d.w + 2 * d.pw;
  const int64_t chunk = images_per_chunk(d, hp * wp * d.c);
  const float* px = x.data<float>();
  const float* pw = w.data<float>();
  float* py = y.data<float>();
  for (int64_t n0 = 0; n0 < d.n; n0 += chunk) {
    const int64_t images = std::min(chunk, d.n - n0), rows = images * d.rows_per_image();
    float* y_chunk = py + n0 * d.rows_per_image() * d.o;
    if (d.direct()) {
      sgemm(false, true, rows, d.o, k, 1.0f, px + n0 * d.h * d.w * d.c, k, pw, k, 0.0f, y_chunk, d.o);
      continue;
    }
    const float* input = px + n0 * d.h * d.w * d.c;
    if (d.ph > 0 || d.pw > 0) {
      float* padded = column_buffer(images * hp * wp * d.c);
      pad_images(d, input, images, padded);
      input = padded;
    }
    const GatheredRows columns{receptive_fields(d, input, images), d.kh, d.kw * d.c, wp * d.c};
    sgemm_gathered(true, rows, d.o, 1.0f, columns, pw, k, 0.0f, y_chunk, d.o);
  }
}

void conv2d_backward_data(Context&, const Tensor& dy, const Tensor& w, Tensor& dx, const Conv2dGeometry& geometry) {
  if (winograd_applies(dx.shape(), w.shape(), geometry)) return winograd_backward_data(dy, w, dx);
  const ConvDims d = conv_dims(dx.shape(), w.shape(), dy.shape(), geometry);
  const int64_t k = d.k(), chunk = images_per_column_chunk(d);
  const float* pdy = dy.data<float>();
  const float* pw = w.data<float>();
  float* pdx = dx.data<float>();
  for (int64_t n0 = 0; n0 < d.n; n0 += chunk) {
    const int64_t images = std::min(chunk, d.n - n0), rows = images * d.rows_per_image();
    const float* dy_chunk = pdy + n0 * d.rows_per_image() * d.o;
    if (d.direct()) {
      sgemm(false, false, rows, k, d.o, 1.0f, dy_chunk, d.o, pw, k, 0.0f, pdx + n0 * d.h * d.w * d.c, k);
      continue;
    }
    for_each_slab(d, [&](const Slab& slab) {
      float* dcol = column_buffer(rows * slab.depth);
      sgemm(false, false, rows, slab.depth, d.o, 1.0f, dy_chunk, d.o, pw + slab.offset, k, 0.0f, dcol, slab.depth);
      col2im(d, dcol, n0, images, slab, pdx);
    });
  }
}

void conv2d_backward_filter(Context&, const Tensor& x, const Tensor& dy, Tensor& dw, const Conv2dGeometry& geometry) {
  if (winograd_applies(x.shape(), dw.shape(), geometry)) return winograd_backward_filter(x, dy, dw);
  const ConvDims d = conv_dims(x.shape(), dw.shape(), dy.shape(), geometry);
  const int64_t k = d.k(), chunk = images_per_column_chunk(d);
  const float* px = x.data<float>();
  const float* pdy = dy.data<float>();
  float* pdw = dw.data<float>();
  for (int64_t n0 = 0; n0 < d.n; n0 += chunk) {
    const int64_t images = std::min(chunk, d.n - n0), rows = images * d.rows_per_image();
    const float* dy_chunk = pdy + n0 * d.rows_per_image() * d.o;
    if (d.direct()) {
      sgemm(true, false, d.o, k, rows, 1.0f, dy_chunk, d.o, px + n0 * d.h * d.w * d.c, k, 1.0f, pdw, k);
      continue;
    }
    for_each_slab(d, [&](const Slab& slab) {
      float* col = column_buffer(rows * slab.depth);
      im2col(d, px, n0, images, slab, col);
      sgemm(true, false, d.o, slab.depth, rows, 1.0f, dy_chunk, d.o, col, slab.depth, 1.0f, pdw + slab.offset, k);
    });
  }
}

}  // namespace cuface::cpu
