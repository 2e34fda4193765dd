// Tensor: a shape (up to 4 dimensions, NHWC for images), a dtype, a device and a reference-counted
// storage. Tensors are always contiguous; views (reshape, slicing the first dimension) share storage.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>

#include "engine/dtype.h"
#include "engine/error.h"

namespace cuface {

enum class Device : uint8_t { CPU, CUDA };
const char* device_name(Device device);  // "cpu", "cuda"

struct Shape {
  static constexpr int kMaxRank = 4;
  std::array<int64_t, kMaxRank> dims{};
  int rank = 0;

  Shape() = default;
  Shape(std::initializer_list<int64_t> sizes);
  int64_t operator[](int axis) const { return dims[axis]; }
  int64_t numel() const;
  bool operator==(const Shape& other) const;
  std::string str() const;  // "[2, 3, 4]"
};

// Owns one allocation. `release` returns the memory to where it came from (allocator, munmap, ...).
struct Storage {
  void* data = nullptr;
  size_t bytes = 0;
  Device device = Device::CPU;
  bool pinned = false;
  std::function<void(void*)> release;
  ~Storage();
};

class Tensor {
 public:
  Tensor() = default;  // undefined: holds nothing

  static Tensor empty(const Shape& shape, DType dtype = DType::F32, Device device = Device::CPU);
  static Tensor zeros(const Shape& shape, DType dtype = DType::F32, Device device = Device::CPU);
  // Page-locked host memory, so host-to-device copies run asynchronously (plain memory without CUDA).
  static Tensor empty_pinned(const Shape& shape, DType dtype);
  // Wraps memory owned elsewhere; `release` (may be empty) runs when the last view goes away.
  static Tensor from_blob(void* data, const Shape& shape, DType dtype, Device device,
                          std::function<void(void*)> release = {});

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int rank() const { return shape_.rank; }
  int64_t size(int axis) const;  // negative axes count from the end
  int64_t numel() const { return shape_.numel(); }
  size_t bytes() const { return size_t(numel()) * dtype_size(dtype_); }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  bool is_cuda() const { return device_ == Device::CUDA; }
  bool is_pinned() const { return storage_ && storage_->pinned; }
  std::string str() const;  // "f32[2, 3] cpu"

  void* raw() const { return static_cast<char*>(storage_->data) + offset_; }
  template <class T>
  T* data() const {
    CUFACE_CHECK(dtype_ == dtype_of<T>::value,
                 std::string("tensor is ") + dtype_name(dtype_) + ", accessed as " + dtype_name(dtype_of<T>::value));
    return static_cast<T*>(raw());
  }

  // Views sharing this tensor's storage.
  Tensor reshape(const Shape& shape) const;
  Tensor slice(int64_t begin, int64_t end) const;  // rows [begin, end) of the first dimension

  // Copies. `to` and `clone` are synchronous: on the legacy default stream, which first waits for
  // the work queued on every context's stream (created blocking), so a result read back with `to`
  // is complete. `copy_from` requires equal numel and dtype.
  Tensor to(Device device) const;
  Tensor clone() const { return to(device_); }
  void copy_from(const Tensor& source);

 private:
  std::shared_ptr<Storage> storage_;
  size_t offset_ = 0;  // bytes
  Shape shape_;
  DType dtype_ = DType::F32;
  Device device_ = Device::CPU;
};

// Validation helpers used by kernels and layers to reject mismatched arguments with a clear message.
void check_shape(const Tensor& t, const Shape& expected, const char* what);
void check_same_device(const Tensor& a, const Tensor& b, const char* what);

}  // namespace cuface
