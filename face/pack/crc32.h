// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320): the checksum of zlib, PNG and Python's
// zlib.crc32, so pack records can be checked with standard tools.
#pragma once
#include <cstddef>
#include <cstdint>

namespace cuface {

// CRC of `size` bytes, continuing from `crc` (0 to start).
uint32_t crc32(const void* data, size_t size, uint32_t crc = 0);

}  // namespace cuface
