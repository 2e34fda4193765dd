// CPU GEMM: a packed, cache-blocked, multi-threaded SGEMM in the style of GotoBLAS and BLIS
// (Goto & van de Geijn, "Anatomy of High-Performance Matrix Multiplication", TOMS 2008), in plain
// C++ loops and, in the micro-kernel, GCC's portable vector types (no intrinsics).
//
//   C[m, n] = alpha * op(A)[m, k] * op(B)[k, n] + beta * C      (row-major, with leading dimensions)
//
// The product is a sum of k rank-1 updates, C += op(A)[:, p] * op(B)[p, :]. The micro-kernel keeps
// an MR x NR tile of C in vector registers (NR along C's rows, the vector direction) and, for each p,
// broadcasts MR values of A and loads NR values of B. Everything else exists so that those two
// streams come from cache-resident memory, with each level of blocking sized for one level of the
// memory hierarchy; B is copied into contiguous strips ("packing"), A is read where it lies:
//
//   for ic over the rows of C, MC at a time
//     for pc over k, KC at a time                 (beta applies on the first pc only)
//       for jc over the columns of C, NC at a time
//         pack B~ = op(B)[pc:+KC, jc:+NC]         NR-column strips                           (L2)
//         for ir over the MC rows, MR at a time   A's strip, MR rows x KC depths, in place   (L1)
//           for jr over the NC columns, NR at a time  B~ strip [KC x NR]                     (L1)
//             micro-kernel: C[ir:+MR, jr:+NR] = alpha * A strip * B~ strip + beta * C
//
// B~ strips are zero-padded to full NR, so the micro-kernel always runs at full width and only its
// store step handles the ragged edges of C.
//
// GotoBLAS also packs A, into MR-row strips (A~). Here the micro-kernel reads A's rows in place
// (InPlaceStrip) or, for a transposed A, its MR consecutive values per depth (TransposedStrip):
// skipping the copy pays most in thin products, where each value of A meets only a few B~ strips
// (reads_in_place). Implicit GEMM (sgemm_gathered): A's rows may also be gathered, each a few runs
// of contiguous memory anywhere (a convolution's receptive fields in its input), so a column matrix
// is never written; depth blocks then hold whole runs, or pieces of a long one.
//
// Threads: C is cut into a grid of rectangles ("parts", as square as the shape allows, a few per
// thread) and each thread takes parts from a shared counter and runs the loops above on each, with
// its own packing buffers. Threads never wait for each other until the end, and a thread that loses
// its core (to a data loader, or another process) delays the product by one part, not by a share
// fixed in advance; teams that synchronise per block lose a scheduler time slice at every barrier.
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <utility>

#include "kernels/gemm.h"

namespace cuface {

namespace {

// Register blocking per vector ISA: MR * NR / (vector width) accumulators plus NR / width B
// vectors and one broadcast must fit the register file (32 registers with AVX-512, 16 otherwise).
// KC keeps a B~ strip (KC x NR: 24 KiB with AVX-512) in L1 beside the MR rows of A it meets;
// KC x NC (one B~ block) fits a quarter of a 1-2 MiB L2.
#if defined(__AVX512F__)
constexpr int64_t MR = 14, NR = 32, KC = 192, NC = 320, kVectorLanes = 16;  // 28 zmm accumulators
// GCC prefers 256-bit vectors on some AVX-512 CPUs; this tile is laid out for 512-bit ones.
#define CUFACE_GEMM_VECTOR_WIDTH __attribute__((target("prefer-vector-width=512")))
#elif defined(__AVX__)
constexpr int64_t MR = 6, NR = 16, KC = 128, NC = 192, kVectorLanes = 8;  // 12 ymm accumulators
#define CUFACE_GEMM_VECTOR_WIDTH
#else
constexpr int64_t MR = 6, NR = 8, KC = 128, NC = 128, kVectorLanes = 4;  // 12 accumulators of 4 floats (SSE, NEON)
#define CUFACE_GEMM_VECTOR_WIDTH
#endif
constexpr int64_t MC = 768;  // rows of A per B~ block (MC x KC floats, ~0.6 MiB: L2 and L3)

// Below this many multiply-adds one thread is faster than waking the others; also the smallest part.
constexpr int64_t kFlopsPerPart = 64 * 64 * 64;
constexpr int64_t kPartsPerThread = 4;
// Packing an element costs about as much as this many of the micro-kernel's multiply-adds; used
// to weigh the operands each thread packs against its share of the product.
constexpr int64_t kPackCost = 64;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }
// Splits `total` into equal blocks of at most `limit`, each a multiple of `multiple` (balanced
// blocking: 1000 in blocks of 384 gives 3 x 336, not 384 + 384 + 232).
int64_t balanced_block(int64_t total, int64_t limit, int64_t multiple) {
  return std::min(round_up(ceil_div(total, ceil_div(total, limit)), multiple), round_up(total, multiple));
}

// A 64-byte aligned float buffer that only grows, so repeated GEMMs allocate nothing.
struct PackBuffer {
  std::unique_ptr<float, decltype(&std::free)> data{nullptr, &std::free};
  int64_t capacity = 0;
  float* get(int64_t floats) {
    if (floats > capacity) {
      capacity = round_up(floats, 16);
      data.reset(static_cast<float*>(std::aligned_alloc(64, size_t(capacity) * sizeof(float))));
      CUFACE_CHECK(data != nullptr, "sgemm: out of memory for packing buffers");
    }
    return data.get();
  }
};

// A is either a matrix (a, lda, trans_a) or, with `rows` set, gathered rows (kernels/gemm.h). A matrix
// row is one run: runs = 1, run_length = k.
struct Problem {
  bool trans_a, trans_b;
  int64_t m, n, k;
  float alpha;
  const float* a;
  int64_t lda;
  const float* const* rows;
  int64_t runs, run_length, run_stride;
  const float* b;
  int64_t ldb;
  float beta;
  float* c;
  int64_t ldc;
};

// A depth block: depths [offset, offset + length) of each of the runs [run, run + runs), in order.
struct DepthBlock {
  int64_t run, runs, offset, length;
  int64_t depth() const { return runs * length; }
};

// The depth blocks of k, each about `limit` deep: whole runs grouped when runs are short, a long run
// cut in balanced pieces.
template <class F>
void for_each_depth_block(const Problem& g, int64_t limit, F f) {
  if (g.run_length >= limit) {
    const int64_t length = balanced_block(g.run_length, limit, 1);
    for (int64_t run = 0; run < g.runs; ++run)
      for (int64_t offset = 0; offset < g.run_length; offset += length)
        f(DepthBlock{run, 1, offset, std::min(length, g.run_length - offset)});
    return;
  }
  const int64_t runs = balanced_block(g.runs, limit / g.run_length, 1);
  for (int64_t run = 0; run < g.runs; run += runs) f(DepthBlock{run, std::min(runs, g.runs - run), 0, g.run_length});
}

// Where row i of A (not transposed) starts: a row of the matrix, or a gathered row.
const float* row_start(const Problem& g, int64_t i) { return g.rows ? g.rows[i] : g.a + i * g.lda; }

// A vector of `Lanes` floats, in GCC's vector extension (the compiler picks the registers: zmm, ymm,
// xmm or NEON). An alias template would drop the attribute, hence the struct.
template <int64_t Lanes>
struct VectorOf {
  typedef float type __attribute__((vector_size(Lanes * sizeof(float))));
  typedef int32_t lanes __attribute__((vector_size(Lanes * sizeof(int32_t))));  // shuffle masks
};

// f(0), f(1), ..., f(N - 1), each index a compile-time constant, unrolled in the source: an array
// indexed only by constants is split into registers before the optimiser's loop passes run.
template <int64_t N, class F>
__attribute__((always_inline)) inline void unrolled(F f) {
  [&]<int64_t... I>(std::integer_sequence<int64_t, I...>) {
    (f(std::integral_constant<int64_t, I>{}), ...);
  }(std::make_integer_sequence<int64_t, N>{});
}

// Transposing a kVectorLanes-square block of floats held as vectors (v[j] its rows; afterwards
// v[p][j] is the old v[j][p]): log2(lanes) rounds, each swapping the off-diagonal sub-blocks of
// every 2 x 2 grid of blocks at one scale (block = 1, 2, 4, ... lanes), two shuffles per pair of
// rows. At lane l of a pair (r, r + block), the lower row keeps its own lanes where bit `block` of l
// is clear and takes the upper row's lanes `block` earlier where it is set; the upper row the
// reverse. __builtin_shuffle indexes the two vectors as one of 2 x lanes (the upper row from lanes).
static_assert(NR % kVectorLanes == 0, "a B~ strip is whole vectors wide");
using Vector = VectorOf<kVectorLanes>::type;
using VectorLanes = VectorOf<kVectorLanes>::lanes;

constexpr int32_t swap_source(int64_t block, bool upper_row, int64_t l) {
  const bool upper_lane = (l & block) != 0;
  if (upper_row) return int32_t(upper_lane ? kVectorLanes + l : l + block);
  return int32_t(upper_lane ? kVectorLanes + l - block : l);
}
template <int64_t Block, bool UpperRow>
constexpr VectorLanes swap_mask() {
  return []<int64_t... L>(std::integer_sequence<int64_t, L...>) {
    return VectorLanes{swap_source(Block, UpperRow, L)...};
  }(std::make_integer_sequence<int64_t, kVectorLanes>{});
}

__attribute__((always_inline)) inline void transpose(Vector (&v)[kVectorLanes]) {
  unrolled<kVectorLanes>([&](auto bit) {
    constexpr int64_t block = int64_t(1) << bit;
    if constexpr (block < kVectorLanes) {
      constexpr VectorLanes lower = swap_mask<block, false>(), upper = swap_mask<block, true>();
      unrolled<kVectorLanes>([&](auto r) {
        if constexpr ((r & block) == 0) {
          const Vector a = v[r], b = v[r + block];
          v[r] = __builtin_shuffle(a, b, lower);
          v[r + block] = __builtin_shuffle(a, b, upper);
        }
      });
    }
  });
}

// A~ strip of a transposed A (packed only where it cannot be read in place: reads_in_place): rows
// [i0, i0 + rows) of op(A) over a depth block, op(A)(i, p) = a[p * lda + i], stored depth-major as
// dst[p * MR + r], rows past the edge zero. A matrix row is one run, so the block's depths are
// contiguous.
void pack_a_strip(const Problem& g, int64_t i0, int64_t rows, const DepthBlock& block, float* dst) {
  for (int64_t p = 0; p < block.depth(); ++p) {
    const float* src = g.a + (block.offset + p) * g.lda + i0;
    for (int64_t r = 0; r < MR; ++r) dst[p * MR + r] = r < rows ? src[r] : 0.0f;
  }
}

// B~ strip: depths [p0, p0 + kc) and columns [j0, j0 + cols) of op(B), stored as dst[p * NR + j],
// columns past the edge zero.
void pack_b_strip(const Problem& g, int64_t p0, int64_t kc, int64_t j0, int64_t cols, float* dst) {
  if (g.trans_b) {  // op(B)(p, j) = b[j * ldb + p]: each column is a contiguous run of depths
    int64_t p_vector = 0;
    if (cols == NR)  // lanes x lanes blocks by vector transposes: 2-3x the scalar copy's rate below
      for (; p_vector + kVectorLanes <= kc; p_vector += kVectorLanes)
        for (int64_t jb = 0; jb < NR; jb += kVectorLanes) {
          Vector v[kVectorLanes];
          for (int64_t j = 0; j < kVectorLanes; ++j)
            std::memcpy(&v[j], g.b + (j0 + jb + j) * g.ldb + p0 + p_vector, sizeof(Vector));
          transpose(v);
          for (int64_t p = 0; p < kVectorLanes; ++p)
            std::memcpy(dst + (p_vector + p) * NR + jb, &v[p], sizeof(Vector));
        }
    for (int64_t j = 0; j < NR; ++j) {
      const float* src = g.b + (j0 + j) * g.ldb + p0;
      if (j < cols)
        for (int64_t p = p_vector; p < kc; ++p) dst[p * NR + j] = src[p];
      else
        for (int64_t p = 0; p < kc; ++p) dst[p * NR + j] = 0.0f;
    }
  } else {  // op(B)(p, j) = b[p * ldb + j]: each depth is a contiguous run of columns
    for (int64_t p = 0; p < kc; ++p) {
      const float* src = g.b + (p0 + p) * g.ldb + j0;
      for (int64_t j = 0; j < NR; ++j) dst[p * NR + j] = j < cols ? src[j] : 0.0f;
    }
  }
}

// B~ strip for a depth block: the block's runs one after another, as one strip of depth().
void pack_b_block(const Problem& g, const DepthBlock& block, int64_t j0, int64_t cols, float* dst) {
  for (int64_t run = 0; run < block.runs; ++run)
    pack_b_strip(g, (block.run + run) * g.run_length + block.offset, block.length, j0, cols,
                 dst + run * block.length * NR);
}

// Where the micro-kernel reads MR rows of A over a depth block: at(i, q) is row i's q-th value in
// the current run. A packed A~ strip holds the block's runs one after another, MR values per depth.
struct PackedStrip {
  const float* a;
  int64_t length;
  float at(int64_t i, int64_t q) const { return a[q * MR + i]; }
  void next_run() { a += length * MR; }
};
// Rows of A read in place (gathered rows, or a matrix's); rows past the edge of A repeat the last
// one (their sums are not stored).
struct InPlaceStrip {
  const float* row[MR];
  int64_t run_stride, run_offset = 0;
  float at(int64_t i, int64_t q) const { return row[i][run_offset + q]; }
  void next_run() { run_offset += run_stride; }
};
// MR rows of a transposed A read in place: op(A)(i, q) = a[q * lda + i], MR consecutive floats per
// depth (a weight gradient's output gradient dy[pixels, O]: MR channels of one pixel).
struct TransposedStrip {
  const float* a;
  int64_t lda, length;
  float at(int64_t i, int64_t q) const { return a[q * lda + i]; }
  void next_run() { a += length * lda; }
};
InPlaceStrip in_place_strip(const Problem& g, int64_t i0, int64_t rows, const DepthBlock& block) {
  InPlaceStrip strip{{}, g.run_stride};
  for (int64_t i = 0; i < MR; ++i)
    strip.row[i] = row_start(g, i0 + std::min(i, rows - 1)) + block.run * g.run_stride + block.offset;
  return strip;
}

// C[0:Rows, 0:Cols] = alpha * (A strip * B~ strip) + beta * C, over `runs` runs of `length` depths:
// each depth is Rows broadcasts of A and Cols / width vector loads of B feeding Rows * Cols / width
// FMAs into `acc`, which lives in registers for the whole call. Written with loops and plain arrays,
// GCC kept a copy of `acc` in memory, zeroing it with a memset and spilling it at every call (~7% of
// a product 64 deep). Strips are MR and NR wide; a smaller Rows x Cols tile reads only their leading
// part. beta == 0 never reads C, which may hold NaN (as BLAS specifies). Only whole tiles are stored
// here (edge_tile below handles the ragged edges of C). Kept out of line: inlined into the blocked
// loops, it left their counters short of registers (5-10% slower with short depths, e.g. a 1x1
// convolution over 64 channels). The strip comes by reference: passed by value, the caller copied the
// 128-byte InPlaceStrip onto the stack before every call with 64-byte loads of the 14 row pointers it
// had just stored one at a time, a store-forwarding stall per call (perf: a fifth of the blocked
// loops' own samples); by reference, each convolution ran 0.82-1.02x the time, 0.93x on geometric
// mean, and all 53 in a row 0.98x (bench_layers, batch 8, minimum of 4 alternated rounds).
template <int64_t Rows, int64_t Cols, class Strip>
__attribute__((noinline)) CUFACE_GEMM_VECTOR_WIDTH void micro_kernel(const Strip& strip, int64_t runs, int64_t length,
                                                                     const float* __restrict b, float alpha,
                                                                     float beta, float* __restrict c, int64_t ldc) {
  constexpr int64_t width = std::min(Cols, kVectorLanes), vectors = Cols / width;
  using TileVector = typename VectorOf<width>::type;  // narrower than Vector in a tile NR / 4 wide
  const auto load = [](const float* p) {
    TileVector v;
    std::memcpy(&v, p, sizeof v);  // an unaligned vector load
    return v;
  };
  Strip a = strip;
  TileVector acc[Rows][vectors] = {};
  for (int64_t run = 0; run < runs; ++run, a.next_run())
    for (int64_t q = 0; q < length; ++q, b += NR) {
      TileVector bq[vectors];
      unrolled<vectors>([&](auto v) { bq[v] = load(b + v * width); });
      unrolled<Rows>([&](auto i) {
        const float ai = a.at(i, q);
        unrolled<vectors>([&](auto v) { acc[i][v] += ai * bq[v]; });
      });
    }
  unrolled<Rows>([&](auto i) {
    unrolled<vectors>([&](auto v) {
      float* out = c + i * ldc + v * width;
      const TileVector result = beta == 0.0f ? alpha * acc[i][v] : alpha * acc[i][v] + beta * load(out);
      std::memcpy(out, &result, sizeof result);
    });
  });
}

// A tile at the edge of C (rows < Rows or cols < Cols): the whole tile into a local buffer, then
// its valid part into C.
template <int64_t Rows, int64_t Cols, class Strip>
void edge_tile(const Strip& a, int64_t runs, int64_t length, const float* b, float alpha, float beta, float* c,
               int64_t ldc, int64_t rows, int64_t cols) {
  alignas(64) float products[Rows * Cols];
  micro_kernel<Rows, Cols>(a, runs, length, b, 1.0f, 0.0f, products, Cols);
  for (int64_t i = 0; i < rows; ++i) {
    float* row = c + i * ldc;
    for (int64_t j = 0; j < cols; ++j)
      row[j] = alpha * products[i * Cols + j] + (beta == 0.0f ? 0.0f : beta * row[j]);
  }
}

template <int64_t Rows, int64_t Cols, class Strip>
void multiply_tile(const Strip& a, int64_t runs, int64_t length, const float* b, float alpha, float beta, float* c,
                   int64_t ldc, int64_t rows, int64_t cols) {
  if (rows == Rows && cols == Cols) micro_kernel<Rows, Cols>(a, runs, length, b, alpha, beta, c, ldc);
  else edge_tile<Rows, Cols>(a, runs, length, b, alpha, beta, c, ldc, rows, cols);
}

// The smallest tile that covers rows x cols: MR or about MR / 2 rows, by NR, NR / 2 or NR / 4
// columns, so edges and narrow matrices (a 2-class head) do not pay for a full tile of zeros.
template <int64_t Rows, class Strip>
void micro_kernel_for_columns(const Strip& a, const DepthBlock& block, const float* b, float alpha, float beta,
                              float* c, int64_t ldc, int64_t rows, int64_t cols) {
  const int64_t runs = block.runs, length = block.length;
  if (cols <= NR / 4) multiply_tile<Rows, NR / 4>(a, runs, length, b, alpha, beta, c, ldc, rows, cols);
  else if (cols <= NR / 2) multiply_tile<Rows, NR / 2>(a, runs, length, b, alpha, beta, c, ldc, rows, cols);
  else multiply_tile<Rows, NR>(a, runs, length, b, alpha, beta, c, ldc, rows, cols);
}
template <class Strip>
void run_micro_kernel(const Strip& a, const DepthBlock& block, const float* b, float alpha, float beta, float* c,
                      int64_t ldc, int64_t rows, int64_t cols) {
  constexpr int64_t half_rows = (MR + 1) / 2;
  if (rows <= half_rows) micro_kernel_for_columns<half_rows>(a, block, b, alpha, beta, c, ldc, rows, cols);
  else micro_kernel_for_columns<MR>(a, block, b, alpha, beta, c, ldc, rows, cols);
}

// Each thread packs into its own buffers, kept between calls.
thread_local PackBuffer packed_a_buffer;
thread_local PackBuffer packed_b_buffer;

// A is read in place (ResNet-50's stage 1-2 1x1 convolutions ran 10-30% faster forward and 10-15%
// backward on a Zen 5 than with A packed as GotoBLAS does; with a transposed A in place too, the
// convolutions' backward passes, whose weight gradients take a transposed A, ran 0.81-1.03x the time of
// a packed A~, 0.94x summed over the network; bench_layers, 2 threads). The products equal a packed
// A's with the same depth blocks bit for bit. The exception: a transposed A's last strip, when it has
// fewer than MR rows, is packed (read in place, its MR values at a depth could run past A's end).
bool reads_in_place(const Problem& g, int64_t i0) { return !g.trans_a || i0 + MR <= g.m; }

// Where consecutive rows lie a multiple of 4 KiB apart (the 1x1 convolutions over 1024 and 2048
// channels, the stride-2 ones over 512 and 1024), L1 maps the same depth of every row to one set, and
// MR = 14 rows would evict each other from its 12 ways: such rows are read half a strip at a time.
// Those layers ran 6-15% faster so than with A packed (bench_layers, 2 threads, minimum of 3
// alternated rounds).
int64_t rows_per_in_place_strip(const Problem& g) {
  constexpr int64_t kSetAliasFloats = 4096 / sizeof(float);
  const int64_t distance = g.m == 1 ? 0 : g.rows ? std::abs(g.rows[1] - g.rows[0]) : g.lda;
  return distance > 0 && distance % kSetAliasFloats == 0 ? (MR + 1) / 2 : MR;
}

// The blocked loops over the sub-matrix C[row0:+rows, col0:+cols] (rows a multiple of MR and cols
// of NR unless they reach the edge of C). KC, the depth of a block, was halved from GotoBLAS's A~
// sizing once A was read in place, so that a B~ strip fits L1 beside A's rows: the late stages'
// convolutions, whose weights are the larger operand, ran 10-20% faster so (3x3 with 512 channels,
// 1x1 with stride 2); blocks of KC / 2 ran the weight gradients 0-14% slower.
void blocked_gemm(const Problem& g, int64_t row0, int64_t rows, int64_t col0, int64_t cols) {
  const int64_t strip_rows = g.trans_a ? MR : rows_per_in_place_strip(g);
  const int64_t mc_max = balanced_block(rows, MC, MR);
  const int64_t nc_max = balanced_block(cols, NC, NR);
  for (int64_t ic = row0; ic < row0 + rows; ic += mc_max) {
    const int64_t mc = std::min(mc_max, row0 + rows - ic);
    const int64_t last_strip = (mc - 1) / MR * MR;  // the only strip of a transposed A that may be packed
    const bool pack_last_strip = !reads_in_place(g, ic + last_strip);
    for_each_depth_block(g, KC, [&](const DepthBlock& block) {
      const int64_t kc = block.depth();
      const float beta = block.run == 0 && block.offset == 0 ? g.beta : 1.0f;  // later blocks add
      float* packed_a = pack_last_strip ? packed_a_buffer.get(MR * kc) : nullptr;
      float* packed_b = packed_b_buffer.get(kc * nc_max);
      if (pack_last_strip) pack_a_strip(g, ic + last_strip, mc - last_strip, block, packed_a);
      for (int64_t jc = col0; jc < col0 + cols; jc += nc_max) {
        const int64_t nc = std::min(nc_max, col0 + cols - jc);
        for (int64_t jr = 0; jr < nc; jr += NR)
          pack_b_block(g, block, jc + jr, std::min(NR, nc - jr), packed_b + jr * kc);
        for (int64_t ir = 0; ir < mc; ir += strip_rows) {
          const int64_t strip_height = std::min(strip_rows, mc - ir);
          auto multiply_strip = [&](const auto& a) {
            for (int64_t jr = 0; jr < nc; jr += NR)
              run_micro_kernel(a, block, packed_b + jr * kc, g.alpha, beta, g.c + (ic + ir) * g.ldc + jc + jr, g.ldc,
                               strip_height, std::min(NR, nc - jr));
          };
          if (!g.trans_a) multiply_strip(in_place_strip(g, ic + ir, strip_height, block));
          else if (reads_in_place(g, ic + ir))
            multiply_strip(TransposedStrip{g.a + block.offset * g.lda + ic + ir, g.lda, block.length});
          else multiply_strip(PackedStrip{packed_a, block.length});
        }
      }
    });
  }
}

// How to cut C into row_parts x column_parts <= `parts` rectangles of whole strips: the grid whose
// largest rectangle costs least, counting its multiply-adds and the packing of its operands.
struct PartGrid {
  int64_t row_parts = 1, column_parts = 1;
};
PartGrid part_grid(int64_t m, int64_t n, int64_t parts) {
  const int64_t row_strips = ceil_div(m, MR), column_strips = ceil_div(n, NR);
  PartGrid best;
  int64_t best_cost = INT64_MAX;
  for (int64_t row_parts = 1; row_parts <= std::min(parts, row_strips); ++row_parts) {
    const int64_t column_parts = std::min(parts / row_parts, column_strips);
    const int64_t rows = ceil_div(row_strips, row_parts) * MR, cols = ceil_div(column_strips, column_parts) * NR;
    const int64_t cost = rows * cols + kPackCost * (rows + cols);
    if (cost < best_cost) best = {row_parts, column_parts}, best_cost = cost;
  }
  return best;
}

// [begin, end) of part `index` of `parts`, splitting `total` in whole strips of `strip`.
std::pair<int64_t, int64_t> part_range(int64_t total, int64_t strip, int64_t parts, int64_t index) {
  const int64_t strips = ceil_div(total, strip);
  return {std::min(total, strips * index / parts * strip), std::min(total, strips * (index + 1) / parts * strip)};
}

// C = beta * C, for the products that contribute nothing (k == 0 or alpha == 0).
void scale_c(const Problem& g) {
  for (int64_t i = 0; i < g.m; ++i) {
    float* row = g.c + i * g.ldc;
    for (int64_t j = 0; j < g.n; ++j) row[j] = g.beta == 0.0f ? 0.0f : g.beta * row[j];
  }
}

// Deep products of a small C (a weight gradient: C = O x K summed over every pixel of the batch).
// Cutting C into parts makes each part pack its whole strip of A or B over all of k, so a grid of
// 1 x 8 parts packs A eight times; cut along k instead, into equal slices of at most kSliceDepth,
// each operand is packed once and the slices' products are added in slice order. The slices depend
// on k alone, not on the number of threads or on being called inside a parallel region (where the
// slices run one after another on the caller's thread), and neither does the result.
constexpr int64_t kSliceDepth = 2048;
bool is_deep(const Problem& g) {
  return !g.rows && g.k >= 2 * kSliceDepth && g.k >= 8 * std::max(g.m, g.n);
}

thread_local PackBuffer slice_products_buffer;

void run_slices(const Problem& g) {
  const int64_t slices = ceil_div(g.k, kSliceDepth), depth = ceil_div(g.k, slices), size = g.m * g.n;
  float* products = slice_products_buffer.get(slices * size);
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t s = 0; s < slices; ++s) {
    const int64_t k0 = s * depth;
    Problem slice = g;
    slice.k = std::min(depth, g.k - k0);
    slice.run_length = slice.k;
    slice.a = g.trans_a ? g.a + k0 * g.lda : g.a + k0;
    slice.b = g.trans_b ? g.b + k0 : g.b + k0 * g.ldb;
    slice.alpha = 1.0f, slice.beta = 0.0f;
    slice.c = products + s * size, slice.ldc = g.n;
    blocked_gemm(slice, 0, g.m, 0, g.n);
  }
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < g.m; ++i) {
    float* row = g.c + i * g.ldc;
    for (int64_t j = 0; j < g.n; ++j) {
      float sum = 0.0f;
      for (int64_t s = 0; s < slices; ++s) sum += products[s * size + i * g.n + j];
      row[j] = g.alpha * sum + (g.beta == 0.0f ? 0.0f : g.beta * row[j]);
    }
  }
}

// Runs g on the OpenMP threads: C cut into parts, each part's blocked loops on one thread.
void run_parts(const Problem& g) {
  if (g.k == 0 || g.alpha == 0.0f) {
    scale_c(g);
    return;
  }
  if (is_deep(g)) return run_slices(g);
  // Nested inside another parallel region (e.g. one GEMM per image), stay on the caller's thread.
  const int64_t m = g.m, n = g.n;
  const int64_t useful_parts = std::max<int64_t>(1, m * n * g.k / kFlopsPerPart);
  const int threads = omp_in_parallel() ? 1 : int(std::min<int64_t>(omp_get_max_threads(), useful_parts));
  const PartGrid grid = part_grid(m, n, threads == 1 ? 1 : std::min(useful_parts, kPartsPerThread * threads));
  const int64_t parts = grid.row_parts * grid.column_parts;
  auto run_part = [&](int64_t part) {
    const auto [row_begin, row_end] = part_range(m, MR, grid.row_parts, part / grid.column_parts);
    const auto [col_begin, col_end] = part_range(n, NR, grid.column_parts, part % grid.column_parts);
    if (row_end > row_begin && col_end > col_begin)
      blocked_gemm(g, row_begin, row_end - row_begin, col_begin, col_end - col_begin);
  };
  if (parts == 1) {
    run_part(0);
    return;
  }
#pragma omp parallel for num_threads(int(std::min<int64_t>(threads, parts))) schedule(dynamic, 1)
  for (int64_t part = 0; part < parts; ++part) run_part(part);
}

}  // namespace

void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
           const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  CUFACE_CHECK(m >= 0 && n >= 0 && k >= 0, "sgemm: negative size");
  CUFACE_CHECK(ldc >= std::max<int64_t>(n, 1) && lda >= std::max<int64_t>(trans_a ? m : k, 1) &&
                   ldb >= std::max<int64_t>(trans_b ? k : n, 1),
               "sgemm: a leading dimension is smaller than its row");
  if (m == 0 || n == 0) return;
  run_parts(Problem{trans_a, trans_b, m, n, k, alpha, a, lda, nullptr, 1, k, 0, b, ldb, beta, c, ldc});
}

void sgemm_gathered(bool trans_b, int64_t m, int64_t n, float alpha, const GatheredRows& a, const float* b,
                    int64_t ldb, float beta, float* c, int64_t ldc) {
  const int64_t k = a.runs * a.run_length;
  CUFACE_CHECK(m >= 0 && n >= 0 && a.runs >= 0 && a.run_length >= 0, "sgemm_gathered: negative size");
  CUFACE_CHECK(ldc >= std::max<int64_t>(n, 1) && ldb >= std::max<int64_t>(trans_b ? k : n, 1),
               "sgemm_gathered: a leading dimension is smaller than its row");
  if (m == 0 || n == 0) return;
  run_parts(Problem{false, trans_b, m, n, k, alpha, nullptr, 0, a.rows, a.runs, a.run_length, a.run_stride, b, ldb,
                    beta, c, ldc});
}

namespace cpu {

// A tensor's leading dimension; BLAS asks for at least 1 even when a matrix has no columns.
static int64_t row_length(const Tensor& t) { return std::max<int64_t>(t.size(-1), 1); }

void gemm(Context&, bool trans_a, bool trans_b, float alpha, const Tensor& a, const Tensor& b, float beta,
          Tensor& c) {
  const GemmDims d = check_gemm(trans_a, trans_b, a, b, c);
  sgemm(trans_a, trans_b, d.m, d.n, d.k, alpha, a.data<float>(), row_length(a), b.data<float>(), row_length(b), beta,
        c.data<float>(), row_length(c));
}

}  // namespace cpu
}  // namespace cuface
