// CPU convolution: im2col + SGEMM (the Caffe formulation), in NHWC.
//
// im2col turns the convolution into one matrix product. Row r = (n, oh, ow) of the column matrix
// holds the KH x KW x C input values under output pixel (oh, ow), in (kh, kw, c) order: exactly the
// order of a filter row in OHWI, so
//
//   forward          y[rows, O]   = col[rows, K] * w[O, K]^T          K = KH * KW * C
//   backward data    dcol[rows, K] = dy[rows, O] * w[O, K]            then col2im: dx = sum of dcol
//   backward filter  dw[O, K]    += dy[rows, O]^T * col[rows, K]
//
// In NHWC a 1x1, stride-1, unpadded convolution needs no im2col at all: x viewed as [N*H*W, C] is
// already the column matrix, and dx is dcol. For other shapes the kw taps of one kh form one
// contiguous run of x (kw * C floats), so a row is built with one copy per kh.
//
// The batch is processed in chunks of whole images whose column matrix fits a fixed budget, so
// memory stays bounded for any batch size while each GEMM still has thousands of rows. im2col and
// col2im run on all threads; sgemm (kernels/gemm.h) splits each product across threads itself.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "kernels/conv.h"
#include "kernels/gemm.h"

namespace cuface::cpu {

namespace {

struct ConvDims {
  int64_t n, h, w, c;     // input
  int64_t o, kh, kw;      // filter
  int64_t oh, ow;         // output
  int64_t sh, sw, ph, pw;  // stride, padding
  int64_t k() const { return kh * kw * c; }  // columns of the column matrix
  int64_t rows_per_image() const { return oh * ow; }
  bool direct() const { return kh == 1 && kw == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0; }
};

ConvDims conv_dims(const Shape& x, const Shape& w, const Shape& y, const Conv2dGeometry& g) {
  return {x[0], x[1], x[2], x[3], w[0], w[1], w[2], y[1], y[2], g.stride_h, g.stride_w, g.pad_h, g.pad_w};
}

// The column matrix of one chunk. Grows to the largest chunk and stays, so a training loop does not
// allocate (and page-fault) a fresh buffer for every convolution.
float* column_buffer(int64_t floats) {
  static thread_local std::unique_ptr<float, decltype(&std::free)> buffer{nullptr, &std::free};
  static thread_local int64_t capacity = 0;
  if (floats > capacity) {
    capacity = (floats + 15) / 16 * 16;
    buffer.reset(static_cast<float*>(std::aligned_alloc(64, size_t(capacity) * sizeof(float))));
    CUFACE_CHECK(buffer != nullptr, "conv2d: out of memory for the column buffer");
  }
  return buffer.get();
}

// Images per chunk: as many as keep the column matrix under ~16 MiB, at least one.
int64_t images_per_chunk(const ConvDims& d) {
  constexpr int64_t kColumnBudgetFloats = int64_t(4) << 20;
  const int64_t per_image = std::max<int64_t>(d.rows_per_image() * d.k(), 1);
  return std::max<int64_t>(1, std::min(kColumnBudgetFloats / per_image, d.n));
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

// col[(image - first_image) * OH * OW + oh * OW + ow, (kh * KW + kw) * C + c] for `images` images.
void im2col(const ConvDims& d, const float* x, int64_t first_image, int64_t images, float* col) {
  const int64_t k = d.k(), run = d.kw * d.c;
#pragma omp parallel for schedule(static) if (images * d.rows_per_image() * k > kParallelFloats)
  for (int64_t image_row = 0; image_row < images * d.oh; ++image_row) {
    const int64_t n = first_image + image_row / d.oh, oh = image_row % d.oh;
    const TapRange rows = valid_taps(oh, d.sh, d.ph, d.h, d.kh);
    for (int64_t ow = 0; ow < d.ow; ++ow) {
      float* dst = col + (image_row * d.ow + ow) * k;
      const TapRange cols = valid_taps(ow, d.sw, d.pw, d.w, d.kw);
      const int64_t iw = ow * d.sw - d.pw + cols.begin;
      for (int64_t kh = 0; kh < d.kh; ++kh, dst += run) {
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

// The adjoint of im2col, as a gather: each input pixel sums the column entries that copied it, so
// every dx element is written once, by one thread, with no zeroing pass and no races.
// Tap kh of output row oh reads input row ih = oh * sh - ph + kh, so ih receives from the oh with
// oh * sh = ih + ph - kh, for the kh that make that divisible and oh in [0, OH).
void col2im(const ConvDims& d, const float* col, int64_t first_image, int64_t images, float* dx) {
  const int64_t k = d.k(), c_count = d.c;
#pragma omp parallel for schedule(static) if (images * d.rows_per_image() * k > kParallelFloats)
  for (int64_t image_row = 0; image_row < images * d.h; ++image_row) {
    const int64_t n = image_row / d.h, ih = image_row % d.h;
    for (int64_t iw = 0; iw < d.w; ++iw) {
      float* __restrict dst = dx + (((first_image + n) * d.h + ih) * d.w + iw) * c_count;
      for (int64_t c = 0; c < c_count; ++c) dst[c] = 0.0f;
      for (int64_t kh = 0; kh < d.kh; ++kh) {
        const int64_t th = ih + d.ph - kh;
        if (th < 0) break;  // larger kh only go further up
        if (th % d.sh != 0 || th / d.sh >= d.oh) continue;
        const int64_t oh = th / d.sh;
        for (int64_t kw = 0; kw < d.kw; ++kw) {
          const int64_t tw = iw + d.pw - kw;
          if (tw < 0) break;
          if (tw % d.sw != 0 || tw / d.sw >= d.ow) continue;
          const float* __restrict src = col + ((n * d.oh + oh) * d.ow + tw / d.sw) * k + (kh * d.kw + kw) * c_count;
          for (int64_t c = 0; c < c_count; ++c) dst[c] += src[c];
        }
      }
    }
  }
}

}  // namespace

void conv2d_forward(Context&, const Tensor& x, const Tensor& w, Tensor& y, const Conv2dGeometry& geometry) {
  const ConvDims d = conv_dims(x.shape(), w.shape(), y.shape(), geometry);
  const int64_t k = d.k(), chunk = images_per_chunk(d);
  const float* px = x.data<float>();
  float* py = y.data<float>();
  for (int64_t n0 = 0; n0 < d.n; n0 += chunk) {
    const int64_t images = std::min(chunk, d.n - n0), rows = images * d.rows_per_image();
    const float* col = px + n0 * d.h * d.w * d.c;
    if (!d.direct()) {
      float* buffer = column_buffer(rows * k);
      im2col(d, px, n0, images, buffer);
      col = buffer;
    }
    sgemm(false, true, rows, d.o, k, 1.0f, col, k, w.data<float>(), k, 0.0f, py + n0 * d.rows_per_image() * d.o, d.o);
  }
}

void conv2d_backward_data(Context&, const Tensor& dy, const Tensor& w, Tensor& dx, const Conv2dGeometry& geometry) {
  const ConvDims d = conv_dims(dx.shape(), w.shape(), dy.shape(), geometry);
  const int64_t k = d.k(), chunk = images_per_chunk(d);
  const float* pdy = dy.data<float>();
  float* pdx = dx.data<float>();
  for (int64_t n0 = 0; n0 < d.n; n0 += chunk) {
    const int64_t images = std::min(chunk, d.n - n0), rows = images * d.rows_per_image();
    const float* dy_chunk = pdy + n0 * d.rows_per_image() * d.o;
    if (d.direct()) {
      sgemm(false, false, rows, k, d.o, 1.0f, dy_chunk, d.o, w.data<float>(), k, 0.0f, pdx + n0 * d.h * d.w * d.c, k);
      continue;
    }
    float* dcol = column_buffer(rows * k);
    sgemm(false, false, rows, k, d.o, 1.0f, dy_chunk, d.o, w.data<float>(), k, 0.0f, dcol, k);
    col2im(d, dcol, n0, images, pdx);
  }
}

void conv2d_backward_filter(Context&, const Tensor& x, const Tensor& dy, Tensor& dw, const Conv2dGeometry& geometry) {
  const ConvDims d = conv_dims(x.shape(), dw.shape(), dy.shape(), geometry);
  const int64_t k = d.k(), chunk = images_per_chunk(d);
  const float* px = x.data<float>();
  const float* pdy = dy.data<float>();
  for (int64_t n0 = 0; n0 < d.n; n0 += chunk) {
    const int64_t images = std::min(chunk, d.n - n0), rows = images * d.rows_per_image();
    const float* col = px + n0 * d.h * d.w * d.c;
    if (!d.direct()) {
      float* buffer = column_buffer(rows * k);
      im2col(d, px, n0, images, buffer);
      col = buffer;
    }
    sgemm(true, false, d.o, k, rows, 1.0f, pdy + n0 * d.rows_per_image() * d.o, d.o, col, k, 1.0f, dw.data<float>(), k);
  }
}

}  // namespace cuface::cpu
