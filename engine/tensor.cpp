#include "engine/tensor.h"

#include <cstdlib>
#include <cstring>
#include <sstream>

#include "engine/allocator.h"

namespace cuface {

const char* device_name(Device device) { return device == Device::CUDA ? "cuda" : "cpu"; }

Shape::Shape(std::initializer_list<int64_t> sizes) {
  CUFACE_CHECK(sizes.size() <= size_t(kMaxRank), "tensors have at most 4 dimensions");
  for (int64_t s : sizes) {
    CUFACE_CHECK(s >= 0, "negative dimension in shape");
    dims[rank++] = s;
  }
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int i = 0; i < rank; ++i) n *= dims[i];
  return n;
}

bool Shape::operator==(const Shape& other) const {
  if (rank != other.rank) return false;
  for (int i = 0; i < rank; ++i)
    if (dims[i] != other.dims[i]) return false;
  return true;
}

std::string Shape::str() const {
  std::ostringstream out;
  out << "[";
  for (int i = 0; i < rank; ++i) out << (i ? ", " : "") << dims[i];
  out << "]";
  return out.str();
}

Storage::~Storage() {
  if (release) release(data);
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  Tensor t;
  t.shape_ = shape;
  t.dtype_ = dtype;
  t.device_ = device;
  t.storage_ = std::make_shared<Storage>();
  t.storage_->bytes = t.bytes();
  t.storage_->device = device;
  if (device == Device::CUDA) {
    t.storage_->data = CudaCachingAllocator::instance().allocate(t.storage_->bytes);
    t.storage_->release = [](void* p) { CudaCachingAllocator::instance().free(p); };
  } else {
    t.storage_->data = HostCachingAllocator::instance().allocate(t.storage_->bytes);
    t.storage_->release = [](void* p) { HostCachingAllocator::instance().free(p); };
  }
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  if (device == Device::CUDA)
    device_memset_zero(t.raw(), t.bytes());
  else
    std::memset(t.raw(), 0, t.bytes());
  return t;
}

Tensor Tensor::empty_pinned(const Shape& shape, DType dtype) {
  Tensor t;
  t.shape_ = shape;
  t.dtype_ = dtype;
  t.device_ = Device::CPU;
  t.storage_ = std::make_shared<Storage>();
  t.storage_->bytes = t.bytes();
  t.storage_->data = pinned_allocate(t.storage_->bytes, &t.storage_->pinned);
  t.storage_->release = [pinned = t.storage_->pinned](void* p) { pinned_free(p, pinned); };
  return t;
}

Tensor Tensor::from_blob(void* data, const Shape& shape, DType dtype, Device device,
                         std::function<void(void*)> release) {
  Tensor t;
  t.shape_ = shape;
  t.dtype_ = dtype;
  t.device_ = device;
  t.storage_ = std::make_shared<Storage>();
  t.storage_->data = data;
  t.storage_->bytes = t.bytes();
  t.storage_->device = device;
  t.storage_->release = std::move(release);
  return t;
}

int64_t Tensor::size(int axis) const {
  if (axis < 0) axis += rank();
  CUFACE_CHECK(axis >= 0 && axis < rank(), "axis out of range for tensor " + str());
  return shape_[axis];
}

std::string Tensor::str() const {
  if (!defined()) return "undefined tensor";
  return std::string(dtype_name(dtype_)) + shape_.str() + " " + device_name(device_);
}

Tensor Tensor::reshape(const Shape& shape) const {
  CUFACE_CHECK(shape.numel() == numel(), "cannot reshape " + str() + " to " + shape.str());
  Tensor t = *this;
  t.shape_ = shape;
  return t;
}

Tensor Tensor::slice(int64_t begin, int64_t end) const {
  CUFACE_CHECK(rank() >= 1 && 0 <= begin && begin <= end && end <= shape_[0],
               "slice [" + std::to_string(begin) + ", " + std::to_string(end) + ") out of range for " + str());
  Tensor t = *this;
  size_t row_bytes = shape_[0] ? bytes() / size_t(shape_[0]) : 0;
  t.offset_ += size_t(begin) * row_bytes;
  t.shape_.dims[0] = end - begin;
  return t;
}

Tensor Tensor::to(Device device) const {
  Tensor t = empty(shape_, dtype_, device);
  t.copy_from(*this);
  return t;
}

void Tensor::copy_from(const Tensor& source) {
  CUFACE_CHECK(source.numel() == numel() && source.dtype() == dtype_,
               "copy from " + source.str() + " into " + str() + ": sizes or dtypes differ");
  if (bytes() == 0) return;
  if (device_ == Device::CPU && source.device() == Device::CPU)
    std::memcpy(raw(), source.raw(), bytes());
  else
    device_copy(raw(), device_, source.raw(), source.device(), bytes());
}

void check_shape(const Tensor& t, const Shape& expected, const char* what) {
  CUFACE_CHECK(t.defined() && t.shape() == expected,
               std::string(what) + ": expected shape " + expected.str() + ", got " + t.str());
}

void check_same_device(const Tensor& a, const Tensor& b, const char* what) {
  CUFACE_CHECK(a.device() == b.device(), std::string(what) + ": tensors on different devices (" + a.str() +
                                             " and " + b.str() + ")");
}

}  // namespace cuface
