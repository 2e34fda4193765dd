// CPU Partial FC class selection and row gather/scatter; the CUDA twin is kernels/cuda/partial_fc.cu.
#include <algorithm>
#include <cstring>
#include <vector>

#include "engine/philox.h"
#include "kernels/partial_fc.h"

namespace cuface::cpu {

void select_classes(Context&, const Tensor& labels, int64_t classes, uint64_t seed, uint64_t step, Tensor& index,
                    Tensor& sampled_labels) {
  const int64_t rows = labels.numel(), sample = index.numel();
  const int32_t* y = labels.data<int32_t>();
  std::vector<uint8_t> chosen(size_t(classes), 0);
  for (int64_t i = 0; i < rows; ++i) {
    CUFACE_CHECK(y[i] >= -1 && y[i] < classes, "select_classes: label " + std::to_string(y[i]) + " outside [-1, " +
                                                   std::to_string(classes) + ")");
    if (y[i] >= 0) chosen[size_t(y[i])] = 1;  // positives
  }
  std::vector<uint64_t> keys(static_cast<size_t>(classes));
#pragma omp parallel for schedule(static) if (classes > 65536)
  for (int64_t c = 0; c < classes; ++c) {
    const uint64_t random = philox_block(seed, step, uint64_t(c) / 4).v[c % 4];  // number c of the stream
    keys[size_t(c)] = chosen[size_t(c)] ? uint64_t(c) : (uint64_t(1) << 63) | (random << 31) | uint64_t(c);
  }
  std::nth_element(keys.begin(), keys.begin() + (sample - 1), keys.end());
  for (int64_t k = 0; k < sample; ++k) chosen[size_t(keys[size_t(k)] & 0x7fffffffu)] = 1;
  // index = chosen classes in increasing order; position[c] = where class c landed.
  std::vector<int32_t> position(size_t(classes), -1);
  int32_t* out = index.data<int32_t>();
  int32_t next = 0;
  for (int64_t c = 0; c < classes; ++c)
    if (chosen[size_t(c)]) position[size_t(c)] = next, out[next++] = int32_t(c);
  int32_t* remapped = sampled_labels.data<int32_t>();
  for (int64_t i = 0; i < rows; ++i) remapped[i] = y[i] < 0 ? -1 : position[size_t(y[i])];
}

void gather_rows(Context&, const Tensor& source, const Tensor& index, Tensor& destination) {
  const int64_t count = index.numel(), dim = source.size(1), rows = source.size(0);
  const int32_t* idx = index.data<int32_t>();
  for (int64_t k = 0; k < count; ++k)
    CUFACE_CHECK(idx[k] >= 0 && idx[k] < rows, "gather_rows: index " + std::to_string(idx[k]) + " out of range");
#pragma omp parallel for schedule(static) if (count * dim > 65536)
  for (int64_t k = 0; k < count; ++k)
    std::memcpy(destination.data<float>() + k * dim, source.data<float>() + idx[k] * dim, size_t(dim) * sizeof(float));
}

void scatter_add_rows(Context&, const Tensor& source, const Tensor& index, Tensor& destination) {
  const int64_t count = index.numel(), dim = source.size(1), rows = destination.size(0);
  const int32_t* idx = index.data<int32_t>();
  for (int64_t k = 0; k < count; ++k)
    CUFACE_CHECK(idx[k] >= 0 && idx[k] < rows, "scatter_add_rows: index " + std::to_string(idx[k]) + " out of range");
  const float* src = source.data<float>();
  float* dst = destination.data<float>();
#pragma omp parallel for schedule(static) if (count * dim > 65536)
  for (int64_t k = 0; k < count; ++k)
    for (int64_t j = 0; j < dim; ++j) dst[idx[k] * dim + j] += src[k * dim + j];
}

}  // namespace cuface::cpu
