// CUDA Partial FC class selection (keys, CUB radix sort, scan, compaction; no host synchronisation)
// and row gather/scatter. The CPU twin is kernels/cpu/partial_fc.cpp; the selection rule is in
// kernels/partial_fc.h.
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>

#include "engine/cuda_context.h"
#include "engine/cuda_launch.h"
#include "engine/philox.h"
#include "kernels/partial_fc.h"

namespace cuface::cuda {

namespace {
constexpr int kBlock = 256;

// `classes` below counts the window's classes; a label is in the window when label - first is in [0, classes).
__global__ void mark_positives_kernel(const int32_t* labels, int64_t rows, int64_t first, int64_t classes,
                                      int32_t* chosen) {
  CUFACE_KERNEL_LOOP(i, rows) {
    const int64_t c = int64_t(labels[i]) - first;
    if (labels[i] >= 0 && c >= 0 && c < classes) chosen[c] = 1;
  }
}

__global__ void class_keys_kernel(const int32_t* positive, uint64_t seed, uint64_t number, const int32_t* counter,
                                  int64_t first, int64_t classes, uint64_t* keys) {
  const uint64_t step = random_step(number, counter);
  CUFACE_KERNEL_LOOP(c, classes) {
    const uint64_t number = uint64_t(first + c);  // the class's number of the stream
    const uint64_t random = philox_block(seed, step, number / 4).v[number % 4];
    keys[c] = positive[c] ? uint64_t(c) : (uint64_t(1) << 63) | (random << 31) | uint64_t(c);
  }
}

__global__ void mark_sampled_kernel(const uint64_t* sorted_keys, int64_t sample, int32_t* chosen) {
  CUFACE_KERNEL_LOOP(k, sample) chosen[sorted_keys[k] & 0x7fffffffu] = 1;
}

__global__ void compact_kernel(const int32_t* chosen, const int32_t* position, int64_t classes, int32_t* index) {
  CUFACE_KERNEL_LOOP(c, classes) {
    if (chosen[c]) index[position[c]] = int32_t(c);
  }
}

__global__ void remap_labels_kernel(const int32_t* labels, const int32_t* position, int64_t rows, int64_t first,
                                    int64_t classes, int32_t sample, int32_t* remapped) {
  CUFACE_KERNEL_LOOP(i, rows) {
    const int32_t y = labels[i];
    const int64_t c = int64_t(y) - first;
    remapped[i] = y == -1 ? -1 : (y >= 0 && c >= 0 && c < classes ? position[c] : sample);  // sample: not here
  }
}

// Row r of the result is row index[r] of the source: a block per row (grid-stride over the rows), its
// threads over the row's columns, so no element pays a 64-bit division to find its row.
__global__ void gather_rows_kernel(const float* source, const int32_t* index, float* destination, int64_t count,
                                   int64_t dim) {
  for (int64_t r = blockIdx.x; r < count; r += gridDim.x) {
    const float* from = source + int64_t(index[r]) * dim;
    for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) destination[r * dim + j] = from[j];
  }
}

// The indices are distinct (a sampled class appears once), so no two rows add into the same place.
__global__ void scatter_add_rows_kernel(const float* source, const int32_t* index, float* destination, int64_t count,
                                        int64_t dim) {
  for (int64_t r = blockIdx.x; r < count; r += gridDim.x) {
    float* to = destination + int64_t(index[r]) * dim;
    for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) to[j] += source[r * dim + j];
  }
}

size_t align_up(size_t bytes) { return (bytes + 255) / 256 * 256; }
}  // namespace

void select_classes(Context& ctx, const Tensor& labels, int64_t, uint64_t seed, const RandomStep& step, Tensor& index,
                    Tensor& sampled_labels, ClassWindow window) {
  cudaStream_t stream = cuda_stream(ctx);
  const int64_t rows = labels.numel(), sample = index.numel(), first = window.first, classes = window.count;
  const int n = int(classes);
  // CUB's scratch sizes first, then one workspace: keys in, keys out, chosen flags, positions, CUB temp.
  size_t sort_bytes = 0, scan_bytes = 0;
  CUDA_CHECK(cub::DeviceRadixSort::SortKeys(nullptr, sort_bytes, static_cast<const uint64_t*>(nullptr),
                                            static_cast<uint64_t*>(nullptr), n, 0, 64, stream));
  CUDA_CHECK(cub::DeviceScan::ExclusiveSum(nullptr, scan_bytes, static_cast<const int32_t*>(nullptr),
                                           static_cast<int32_t*>(nullptr), n, stream));
  const size_t key_bytes = align_up(size_t(classes) * sizeof(uint64_t));
  const size_t flag_bytes = align_up(size_t(classes) * sizeof(int32_t));
  const size_t temp_bytes = std::max(sort_bytes, scan_bytes);
  char* workspace = static_cast<char*>(ctx.cuda().workspace_bytes(2 * key_bytes + 2 * flag_bytes + temp_bytes));
  uint64_t* keys = reinterpret_cast<uint64_t*>(workspace);
  uint64_t* sorted = reinterpret_cast<uint64_t*>(workspace + key_bytes);
  int32_t* chosen = reinterpret_cast<int32_t*>(workspace + 2 * key_bytes);
  int32_t* position = reinterpret_cast<int32_t*>(workspace + 2 * key_bytes + flag_bytes);
  void* temp = workspace + 2 * key_bytes + 2 * flag_bytes;

  CUDA_CHECK(cudaMemsetAsync(chosen, 0, size_t(classes) * sizeof(int32_t), stream));
  launch(mark_positives_kernel, grid_for(rows, kBlock), kBlock, 0, stream, labels.data<int32_t>(), rows, first, classes,
         chosen);
  launch(class_keys_kernel, grid_for(classes, kBlock), kBlock, 0, stream, chosen, seed, step.number,
         step.counter_data(), first, classes, keys);
  size_t bytes = sort_bytes;
  CUDA_CHECK(cub::DeviceRadixSort::SortKeys(temp, bytes, keys, sorted, n, 0, 64, stream));
  CUDA_CHECK(cudaMemsetAsync(chosen, 0, size_t(classes) * sizeof(int32_t), stream));
  launch(mark_sampled_kernel, grid_for(sample, kBlock), kBlock, 0, stream, sorted, sample, chosen);
  bytes = scan_bytes;
  CUDA_CHECK(cub::DeviceScan::ExclusiveSum(temp, bytes, chosen, position, n, stream));
  launch(compact_kernel, grid_for(classes, kBlock), kBlock, 0, stream, chosen, position, classes,
         index.data<int32_t>());
  launch(remap_labels_kernel, grid_for(rows, kBlock), kBlock, 0, stream, labels.data<int32_t>(), position, rows, first,
         classes, int32_t(sample), sampled_labels.data<int32_t>());
}

void gather_rows(Context& ctx, const Tensor& source, const Tensor& index, Tensor& destination) {
  const int64_t count = index.numel(), dim = source.size(1);
  if (count * dim == 0) return;
  launch(gather_rows_kernel, grid_for(count, 1), kBlock, 0, cuda_stream(ctx), source.data<float>(),
         index.data<int32_t>(), destination.data<float>(), count, dim);
}

void scatter_add_rows(Context& ctx, const Tensor& source, const Tensor& index, Tensor& destination) {
  const int64_t count = index.numel(), dim = source.size(1);
  if (count * dim == 0) return;
  launch(scatter_add_rows_kernel, grid_for(count, 1), kBlock, 0, cuda_stream(ctx), source.data<float>(),
         index.data<int32_t>(), destination.data<float>(), count, dim);
}

}  // namespace cuface::cuda
