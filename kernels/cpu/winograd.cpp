// Winograd F(2x2, 3x3) convolutions on the CPU: the transforms of kernels/cpu/winograd.h, written out
// as additions, and 16 SGEMMs per chunk of images.
//
// Layouts (floats, one chunk of images at a time so the buffers stay bounded for any batch):
//   U [16][O][C]       the filters' transforms
//   V [16][T][C]       the input patches' transforms, T = tiles of the chunk (images x TH x TW)
//   M [16][T][O]       their products (the output blocks' transforms), or dM backward
// Tile t = (image, ty, tx) covers outputs (2ty .. 2ty + 1, 2tx .. 2tx + 1) and reads input rows and
// columns 2ty - 1 .. 2ty + 2 and 2tx - 1 .. 2tx + 2 (padding 1). The transforms run over the channels
// in their innermost loop, contiguous in NHWC, so they vectorise; positions outside the image read a
// row of zeros or write to a scratch row, so that loop has no tests.
#include "kernels/cpu/winograd.h"

#include <omp.h>

#include <algorithm>
#include <vector>

#include "kernels/gemm.h"

namespace cuface::cpu {

namespace {

constexpr int64_t kTaps = 16;  // the 4 x 4 frequencies xi = 4 * a + b

struct Dims {
  int64_t n, h, w, c, o;
  int64_t th, tw;  // tiles per column and per row: ceil(H / 2), ceil(W / 2)
  int64_t tiles_per_image() const { return th * tw; }
};

Dims dims(const Shape& x, const Shape& w) { return {x[0], x[1], x[2], x[3], w[0], (x[1] + 1) / 2, (x[2] + 1) / 2}; }

// Images per chunk: V and M of a chunk under ~32 MiB, at least one image.
int64_t images_per_chunk(const Dims& d) {
  constexpr int64_t kBudgetFloats = int64_t(8) << 20;
  const int64_t per_image = kTaps * d.tiles_per_image() * (d.c + d.o);
  return std::clamp<int64_t>(kBudgetFloats / per_image, 1, d.n);
}

// U[xi][o][c] = (G g G^T)[a][b] for g[kh][kw] = w[o][kh][kw][c]; G z = (z0, (z0+z1+z2)/2, (z0-z1+z2)/2, z2).
void transform_filters(const Dims& d, const float* w, float* u) {
  const int64_t oc = d.o * d.c;
#pragma omp parallel for schedule(static) if (oc * 9 > (1 << 16))
  for (int64_t o = 0; o < d.o; ++o)
#pragma omp simd  // channels are independent; the row pointers never alias the output
    for (int64_t c = 0; c < d.c; ++c) {
      float g[3][3], r[4][3];
      for (int kh = 0; kh < 3; ++kh)
        for (int kw = 0; kw < 3; ++kw) g[kh][kw] = w[((o * 3 + kh) * 3 + kw) * d.c + c];
      for (int kw = 0; kw < 3; ++kw) {
        r[0][kw] = g[0][kw];
        r[1][kw] = 0.5f * (g[0][kw] + g[1][kw] + g[2][kw]);
        r[2][kw] = 0.5f * (g[0][kw] - g[1][kw] + g[2][kw]);
        r[3][kw] = g[2][kw];
      }
      float* out = u + o * d.c + c;
      for (int a = 0; a < 4; ++a) {
        out[(4 * a + 0) * oc] = r[a][0];
        out[(4 * a + 1) * oc] = 0.5f * (r[a][0] + r[a][1] + r[a][2]);
        out[(4 * a + 2) * oc] = 0.5f * (r[a][0] - r[a][1] + r[a][2]);
        out[(4 * a + 3) * oc] = r[a][2];
      }
    }
}

// dw[o][kh][kw][c] += (G^T dU G)[kh][kw]; G^T u = (u0 + (u1+u2)/2, (u1-u2)/2, (u1+u2)/2 + u3).
void add_filter_gradients(const Dims& d, const float* du, float* dw) {
  const int64_t oc = d.o * d.c;
#pragma omp parallel for schedule(static) if (oc * 9 > (1 << 16))
  for (int64_t o = 0; o < d.o; ++o)
#pragma omp simd  // channels are independent; the row pointers never alias the output
    for (int64_t c = 0; c < d.c; ++c) {
      float m[4][4], r[3][4];
      for (int xi = 0; xi < kTaps; ++xi) m[xi / 4][xi % 4] = du[xi * oc + o * d.c + c];
      for (int b = 0; b < 4; ++b) {
        r[0][b] = m[0][b] + 0.5f * (m[1][b] + m[2][b]);
        r[1][b] = 0.5f * (m[1][b] - m[2][b]);
        r[2][b] = 0.5f * (m[1][b] + m[2][b]) + m[3][b];
      }
      for (int kh = 0; kh < 3; ++kh) {
        float* out = dw + (o * 3 + kh) * 3 * d.c + c;
        out[0 * d.c] += r[kh][0] + 0.5f * (r[kh][1] + r[kh][2]);
        out[1 * d.c] += 0.5f * (r[kh][1] - r[kh][2]);
        out[2 * d.c] += 0.5f * (r[kh][1] + r[kh][2]) + r[kh][3];
      }
    }
}

// The 4 x 4 positions of tile (image, ty, tx) in an [N, H, W, channels] tensor: a pointer to each
// position's channels, or to `outside` (a zero row to read, a scratch row to write) off the image.
template <class T>
void patch_rows(const Dims& d, T* base, int64_t channels, int64_t image, int64_t ty, int64_t tx, int64_t size,
                T* outside, T* rows[4][4]) {
  for (int i = 0; i < size; ++i)
    for (int j = 0; j < size; ++j) {
      const int64_t ih = 2 * ty - (size == 4 ? 1 : 0) + i, iw = 2 * tx - (size == 4 ? 1 : 0) + j;
      const bool inside = ih >= 0 && ih < d.h && iw >= 0 && iw < d.w;
      rows[i][j] = inside ? base + ((image * d.h + ih) * d.w + iw) * channels : outside;
    }
}

// Calls f(image, ty, tx, tile) for every tile of the chunk's images (tile: its index in the chunk),
// a row of tiles per task, on all threads.
template <class F>
void for_each_tile(const Dims& d, int64_t first_image, int64_t images, F f) {
#pragma omp parallel for schedule(static)
  for (int64_t tile_row = 0; tile_row < images * d.th; ++tile_row)
    for (int64_t tx = 0; tx < d.tw; ++tx) f(first_image + tile_row / d.th, tile_row % d.th, tx, tile_row * d.tw + tx);
}

// V[xi][t][c] = (B^T d B)[a][b] for the chunk's tiles; B^T z = (z0 - z2, z1 + z2, z2 - z1, z1 - z3).
void transform_patches(const Dims& d, const float* x, int64_t first_image, int64_t images, const float* zeros,
                       float* v) {
  const int64_t tiles = images * d.tiles_per_image(), stride = tiles * d.c;
  for_each_tile(d, first_image, images, [&](int64_t image, int64_t ty, int64_t tx, int64_t tile) {
    const float* in[4][4];
    patch_rows(d, x, d.c, image, ty, tx, 4, zeros, in);
    float* out = v + tile * d.c;
#pragma omp simd  // channels are independent; the row pointers never alias the output
    for (int64_t c = 0; c < d.c; ++c) {
      float r[4][4];
      for (int j = 0; j < 4; ++j) {
        r[0][j] = in[0][j][c] - in[2][j][c];
        r[1][j] = in[1][j][c] + in[2][j][c];
        r[2][j] = in[2][j][c] - in[1][j][c];
        r[3][j] = in[1][j][c] - in[3][j][c];
      }
      for (int a = 0; a < 4; ++a) {
        out[(4 * a + 0) * stride + c] = r[a][0] - r[a][2];
        out[(4 * a + 1) * stride + c] = r[a][1] + r[a][2];
        out[(4 * a + 2) * stride + c] = r[a][2] - r[a][1];
        out[(4 * a + 3) * stride + c] = r[a][1] - r[a][3];
      }
    }
  });
}

// dx += B dV B^T over each tile's 4 x 4 patch; B v = (v0, v1 - v2 + v3, v1 + v2 - v0, -v3). Patches of
// neighbouring tile rows overlap, so the even rows run first, then the odd ones: no two threads
// add to the same position.
void add_patch_gradients(const Dims& d, const float* dv, int64_t first_image, int64_t images, float* scratch,
                         float* dx) {
  const int64_t tiles = images * d.tiles_per_image(), stride = tiles * d.c;
  for (int64_t parity = 0; parity < 2; ++parity) {
#pragma omp parallel for schedule(static)
    for (int64_t pair = 0; pair < images * ((d.th + 1 - parity) / 2); ++pair) {
      const int64_t rows_of_parity = (d.th + 1 - parity) / 2;
      const int64_t image = pair / rows_of_parity, ty = 2 * (pair % rows_of_parity) + parity;
      float* thread_scratch = scratch + int64_t(omp_get_thread_num()) * d.c;
      for (int64_t tx = 0; tx < d.tw; ++tx) {
        float* out[4][4];
        patch_rows(d, dx, d.c, first_image + image, ty, tx, 4, thread_scratch, out);
        const float* in = dv + ((image * d.th + ty) * d.tw + tx) * d.c;
#pragma omp simd  // channels are independent; the row pointers never alias the output
        for (int64_t c = 0; c < d.c; ++c) {
          float m[4][4], r[4][4];
          for (int xi = 0; xi < kTaps; ++xi) m[xi / 4][xi % 4] = in[xi * stride + c];
          for (int b = 0; b < 4; ++b) {
            r[0][b] = m[0][b];
            r[1][b] = m[1][b] - m[2][b] + m[3][b];
            r[2][b] = m[1][b] + m[2][b] - m[0][b];
            r[3][b] = -m[3][b];
          }
          for (int i = 0; i < 4; ++i) {
            out[i][0][c] += r[i][0];
            out[i][1][c] += r[i][1] - r[i][2] + r[i][3];
            out[i][2][c] += r[i][1] + r[i][2] - r[i][0];
            out[i][3][c] -= r[i][3];
          }
        }
      }
    }
  }
}

// y's 2 x 2 blocks = A^T M A; A^T z = (z0 + z1 + z2, z1 - z2 - z3).
void transform_products(const Dims& d, const float* m, int64_t first_image, int64_t images, float* scratch,
                        float* y) {
  const int64_t tiles = images * d.tiles_per_image(), stride = tiles * d.o;
  for_each_tile(d, first_image, images, [&](int64_t image, int64_t ty, int64_t tx, int64_t tile) {
    float* thread_scratch = scratch + int64_t(omp_get_thread_num()) * d.o;
    float* out[4][4];
    patch_rows(d, y, d.o, image, ty, tx, 2, thread_scratch, out);
    const float* in = m + tile * d.o;
#pragma omp simd  // channels are independent; the row pointers never alias the output
    for (int64_t o = 0; o < d.o; ++o) {
      float p[4][4], r[2][4];
      for (int xi = 0; xi < kTaps; ++xi) p[xi / 4][xi % 4] = in[xi * stride + o];
      for (int b = 0; b < 4; ++b) {
        r[0][b] = p[0][b] + p[1][b] + p[2][b];
        r[1][b] = p[1][b] - p[2][b] - p[3][b];
      }
      for (int i = 0; i < 2; ++i) {
        out[i][0][o] = r[i][0] + r[i][1] + r[i][2];
        out[i][1][o] = r[i][1] - r[i][2] - r[i][3];
      }
    }
  });
}

// dM[xi][t][o] = (A dy A^T)[a][b] over each tile's 2 x 2 block of dy (zero off the image);
// A z = (z0, z0 + z1, z0 - z1, -z1).
void transform_output_gradients(const Dims& d, const float* dy, int64_t first_image, int64_t images,
                                const float* zeros, float* dm) {
  const int64_t tiles = images * d.tiles_per_image(), stride = tiles * d.o;
  for_each_tile(d, first_image, images, [&](int64_t image, int64_t ty, int64_t tx, int64_t tile) {
    const float* in[4][4];
    patch_rows(d, dy, d.o, image, ty, tx, 2, zeros, in);
    float* out = dm + tile * d.o;
#pragma omp simd  // channels are independent; the row pointers never alias the output
    for (int64_t o = 0; o < d.o; ++o) {
      float r[4][2];
      for (int j = 0; j < 2; ++j) {
        r[0][j] = in[0][j][o];
        r[1][j] = in[0][j][o] + in[1][j][o];
        r[2][j] = in[0][j][o] - in[1][j][o];
        r[3][j] = -in[1][j][o];
      }
      for (int a = 0; a < 4; ++a) {
        out[(4 * a + 0) * stride + o] = r[a][0];
        out[(4 * a + 1) * stride + o] = r[a][0] + r[a][1];
        out[(4 * a + 2) * stride + o] = r[a][0] - r[a][1];
        out[(4 * a + 3) * stride + o] = -r[a][1];
      }
    }
  });
}

// out[xi] = in[xi] op(u[xi]) for the 16 frequencies: in[xi] [tiles, depth], u[xi] [cols, depth]
// (trans_u) or [depth, cols], out[xi] [tiles, cols]. The rows of `in` are read where they lie
// (sgemm_gathered): with a depth of only C or O, packing them first cost as much as the products.
// One thread per frequency: 16 products of equal size keep two or four threads evenly busy with one
// fork, where 16 products split across the threads each waited at a barrier.
void multiply_rows(int64_t tiles, int64_t cols, int64_t depth, const float* in, bool trans_u, const float* u,
                   float* out) {
  std::vector<const float*> rows(static_cast<size_t>(kTaps * tiles));
  for (int64_t r = 0; r < kTaps * tiles; ++r) rows[size_t(r)] = in + r * depth;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t xi = 0; xi < kTaps; ++xi)
    sgemm_gathered(trans_u, tiles, cols, 1.0f, GatheredRows{rows.data() + xi * tiles, 1, depth, 0},
                   u + xi * cols * depth, trans_u ? depth : cols, 0.0f, out + xi * tiles * cols, cols);
}

// The buffers of one pass: the chunk's V and M, the filters' U, and a zero / scratch row per thread.
struct Buffers {
  Tensor u, v, m, rows;
  float* zeros() { return rows.data<float>(); }
  float* scratch() { return rows.data<float>() + rows.size(-1); }
};
Buffers buffers(const Dims& d, int64_t chunk) {
  const int64_t tiles = chunk * d.tiles_per_image(), width = std::max(d.c, d.o);
  Buffers b{Tensor::empty({kTaps, d.o, d.c}), Tensor::empty({kTaps, tiles, d.c}), Tensor::empty({kTaps, tiles, d.o}),
            Tensor::zeros({1 + omp_get_max_threads(), width})};
  return b;
}

}  // namespace

bool winograd_applies(const Shape& x, const Shape& w, const Conv2dGeometry& g) {
  if (w[1] != 3 || w[2] != 3 || g.stride_h != 1 || g.stride_w != 1 || g.pad_h != 1 || g.pad_w != 1) return false;
  // Each call transforms all 16 x O x C filter values (memory-bound) for 16 x tiles x O x C products:
  // with few tiles (ResNet-50's last stage at 112 px: 32 per batch of 8) the filters' side costs
  // more than the products save (2.9x the direct convolution's time, bench_layers).
  constexpr int64_t kMinTiles = 128;
  return x[0] * ((x[1] + 1) / 2) * ((x[2] + 1) / 2) >= kMinTiles;
}

void winograd_forward(const Tensor& x, const Tensor& w, Tensor& y) {
  const Dims d = dims(x.shape(), w.shape());
  const int64_t chunk = images_per_chunk(d);
  Buffers b = buffers(d, chunk);
  float *u = b.u.data<float>(), *v = b.v.data<float>(), *m = b.m.data<float>();
  transform_filters(d, w.data<float>(), u);
  for (int64_t n0 = 0; n0 < d.n; n0 += chunk) {
    const int64_t images = std::min(chunk, d.n - n0), tiles = images * d.tiles_per_image();
    transform_patches(d, x.data<float>(), n0, images, b.zeros(), v);
    multiply_rows(tiles, d.o, d.c, v, true, u, m);  // M[xi] = V[xi] U[xi]^T
    transform_products(d, m, n0, images, b.scratch(), y.data<float>());
  }
}

void winograd_backward_data(const Tensor& dy, const Tensor& w, Tensor& dx) {
  const Dims d = dims(dx.shape(), w.shape());
  const int64_t chunk = images_per_chunk(d);
  Buffers b = buffers(d, chunk);
  float *u = b.u.data<float>(), *dv = b.v.data<float>(), *dm = b.m.data<float>();
  transform_filters(d, w.data<float>(), u);
  std::fill_n(dx.data<float>(), dx.numel(), 0.0f);  // the patches add into it
  for (int64_t n0 = 0; n0 < d.n; n0 += chunk) {
    const int64_t images = std::min(chunk, d.n - n0), tiles = images * d.tiles_per_image();
    transform_output_gradients(d, dy.data<float>(), n0, images, b.zeros(), dm);
    multiply_rows(tiles, d.c, d.o, dm, false, u, dv);  // dV[xi] = dM[xi] U[xi]
    add_patch_gradients(d, dv, n0, images, b.scratch(), dx.data<float>());
  }
}

void winograd_backward_filter(const Tensor& x, const Tensor& dy, Tensor& dw) {
  const Dims d = dims(x.shape(), dw.shape());
  const int64_t chunk = images_per_chunk(d);
  Buffers b = buffers(d, chunk);
  float *du = b.u.data<float>(), *v = b.v.data<float>(), *dm = b.m.data<float>();
  for (int64_t n0 = 0; n0 < d.n; n0 += chunk) {
    const int64_t images = std::min(chunk, d.n - n0), tiles = images * d.tiles_per_image();
    transform_patches(d, x.data<float>(), n0, images, b.zeros(), v);
    transform_output_gradients(d, dy.data<float>(), n0, images, b.zeros(), dm);
#pragma omp parallel for schedule(dynamic, 1)  // one thread per frequency, as multiply_rows
    for (int64_t xi = 0; xi < kTaps; ++xi)  // dU[xi] (+)= dM[xi]^T V[xi]
      sgemm(true, false, d.o, d.c, tiles, 1.0f, dm + xi * tiles * d.o, d.o, v + xi * tiles * d.c, d.c,
            n0 == 0 ? 0.0f : 1.0f, du + xi * d.o * d.c, d.c);
  }
  add_filter_gradients(d, du, dw.data<float>());
}

}  // namespace cuface::cpu
