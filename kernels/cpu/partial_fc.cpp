// CPU Partial FC class selection and row gather/scatter; the CUDA twin is kernels/cuda/partial_fc.cu.
#include <algorithm>
#include <cstring>
#include <vector>

#include "engine/philox.h"
#include "kernels/partial_fc.h"

namespace cuface::cpu {

void select_classes(Context&, const Tensor& labels, int64_t classes, uint64_t seed, const RandomStep& random,
                    Tensor& index, Tensor& sampled_labels, ClassWindow window) {
  const uint64_t step = random_step(random.number, random.counter_data());
  const int64_t rows = labels.numel(), sample = index.numel(), count = window.count;
  const int32_t* y = labels.data<int32_t>();
  auto in_window = [&](int32_t label) { return label >= window.first && label < window.first + count; };
  std::vector<uint8_t> chosen(size_t(count), 0);
  for (int64_t i = 0; i < rows; ++i) {
    CUFACE_CHECK(y[i] >= -1 && y[i] < classes, "select_classes: label " + std::to_string(y[i]) + " outside [-1, " +
                                                   std::to_string(classes) + ")");
    if (in_window(y[i])) chosen[size_t(y[i] - window.first)] = 1;  // positives
  }
  std::vector<uint64_t> keys(static_cast<size_t>(count));
#pragma omp parallel for schedule(static) if (count > 65536)
  for (int64_t c = 0; c < count; ++c) {
    const uint64_t number = uint64_t(window.first + c);  // the class's number of the stream
    const uint64_t random = philox_block(seed, step, number / 4).v[number % 4];
    keys[size_t(c)] = chosen[size_t(c)] ? uint64_t(c) : (uint64_t(1) << 63) | (random << 31) | uint64_t(c);
  }
  std::nth_element(keys.begin(), keys.begin() + (sample - 1), keys.end());
  for (int64_t k = 0; k < sample; ++k) chosen[size_t(keys[size_t(k)] & 0x7fffffffu)] = 1;
  // index = chosen classes in increasing order; position[c] = where class c landed.
  std::vector<int32_t> position(size_t(count), -1);
  int32_t* out = index.data<int32_t>();
  int32_t next = 0;
  for (int64_t c = 0; c < count; ++c)
    if (chosen[size_t(c)]) position[size_t(c)] = next, out[next++] = int32_t(c);
  int32_t* remapped = sampled_labels.data<int32_t>();
  for (int64_t i = 0; i < rows; ++i)
    remapped[i] = y[i] < 0 ? -1 : in_window(y[i]) ? position[size_t(y[i] - window.first)] : int32_t(sample);
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
