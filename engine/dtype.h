// Element types. bf16 and f16 are stored as their 16 bits; conversions round to nearest even, the
// same way on host and device, so CPU code can emulate GPU rounding exactly in tests.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#if defined(__CUDACC__)
#define CUFACE_HOST_DEVICE __host__ __device__
#else
#define CUFACE_HOST_DEVICE
#endif

namespace cuface {

enum class DType : uint8_t { F32, BF16, F16, U8, I32 };

size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);  // "f32", "bf16", "f16", "u8", "i32"

struct bf16 {
  uint16_t bits;
};
struct f16 {
  uint16_t bits;
};

CUFACE_HOST_DEVICE inline uint32_t float_bits(float value) {
  uint32_t bits;
  memcpy(&bits, &value, 4);
  return bits;
}
CUFACE_HOST_DEVICE inline float bits_float(uint32_t bits) {
  float value;
  memcpy(&value, &bits, 4);
  return value;
}

CUFACE_HOST_DEVICE inline bf16 to_bf16(float value) {
  uint32_t bits = float_bits(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return bf16{uint16_t((bits >> 16) | 0x40)};  // quiet NaN
  bits += 0x7fffu + ((bits >> 16) & 1u);  // round to nearest, ties to even
  return bf16{uint16_t(bits >> 16)};
}
CUFACE_HOST_DEVICE inline float to_float(bf16 value) { return bits_float(uint32_t(value.bits) << 16); }

// IEEE half precision, round to nearest even (subnormals included).
CUFACE_HOST_DEVICE inline f16 to_f16(float value) {
  uint32_t x = float_bits(value);
  uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t magnitude = x & 0x7fffffffu;
  if (magnitude > 0x7f800000u) return f16{uint16_t(sign | 0x7e00u)};
  if (magnitude >= 0x477ff000u) return f16{uint16_t(sign | 0x7c00u)};  // overflows to infinity
  if (magnitude < 0x38800000u) {                                         // subnormal half
    float scaled = bits_float(magnitude) * 16777216.0f;                  // * 2^24, exact
    uint32_t m = uint32_t(scaled);
    float rest = scaled - float(m);
    if (rest > 0.5f || (rest == 0.5f && (m & 1u))) ++m;
    return f16{uint16_t(sign | m)};
  }
  uint32_t rounded = magnitude + 0xfffu + ((magnitude >> 13) & 1u);
  return f16{uint16_t(sign | ((rounded - 0x38000000u) >> 13))};
}
CUFACE_HOST_DEVICE inline float to_float(f16 value) {
  uint32_t sign = uint32_t(value.bits & 0x8000u) << 16;
  uint32_t exponent = (value.bits >> 10) & 0x1fu;
  uint32_t mantissa = value.bits & 0x3ffu;
  if (exponent == 0) return bits_float(sign) + (sign ? -1.0f : 1.0f) * float(mantissa) / 16777216.0f;
  if (exponent == 31) return bits_float(sign | 0x7f800000u | (mantissa << 13));
  return bits_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

// The DType of a C++ element type, for typed access to tensor data.
template <class T>
struct dtype_of;
template <>
struct dtype_of<float> {
  static constexpr DType value = DType::F32;
};
template <>
struct dtype_of<bf16> {
  static constexpr DType value = DType::BF16;
};
template <>
struct dtype_of<f16> {
  static constexpr DType value = DType::F16;
};
template <>
struct dtype_of<uint8_t> {
  static constexpr DType value = DType::U8;
};
template <>
struct dtype_of<int32_t> {
  static constexpr DType value = DType::I32;
};

}  // namespace cuface
