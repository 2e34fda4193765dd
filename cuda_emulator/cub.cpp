// Stand-ins for the two CUB device algorithms cuface uses, written from CUB's documentation:
// DeviceRadixSort::SortKeys (ascending, stable, ordered by the key bits [begin_bit, end_bit) only)
// and DeviceScan::ExclusiveSum. Both follow CUB's two-phase protocol: a call with
// d_temp_storage == nullptr only reports the temporary storage needed; a call with at least that
// much device memory queues the work on the stream. The work really uses its temporary storage, as
// CUB does, so storage that is too small or shared with live data gives wrong results here too.
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "library_support.h"

namespace cuda_emulator {
namespace {

constexpr int kDigitBits = 8;     // the radix sort's passes look at 8 bits each
constexpr int kScanTile = 256;    // the scan's first pass sums tiles of this many items

// The sort alternates between the output and a second buffer of keys in the temporary storage.
size_t sort_storage_bytes(int num_items) { return std::max<size_t>(1, size_t(num_items) * sizeof(uint64_t)); }

// The scan keeps one running total per tile.
size_t scan_storage_bytes(int num_items) {
  return std::max<size_t>(1, size_t((num_items + kScanTile - 1) / kScanTile) * sizeof(int32_t));
}

// Least-significant-digit radix sort of keys[0, n) by bits [begin_bit, end_bit), each pass a stable
// counting sort into the other buffer; the sorted keys end in `keys`.
void radix_sort(uint64_t* keys, uint64_t* other, int n, int begin_bit, int end_bit) {
  uint64_t* source = keys;
  uint64_t* target = other;
  for (int shift = begin_bit; shift < end_bit; shift += kDigitBits) {
    const int bits = std::min(kDigitBits, end_bit - shift);
    const uint64_t mask = (uint64_t(1) << bits) - 1;
    std::vector<size_t> start(size_t(1) << bits, 0);
    for (int i = 0; i < n; ++i) ++start[(source[i] >> shift) & mask];
    size_t running = 0;
    for (size_t& count : start) running += std::exchange(count, running);  // counts -> first positions
    for (int i = 0; i < n; ++i) target[start[(source[i] >> shift) & mask]++] = source[i];
    std::swap(source, target);
  }
  if (source != keys) std::copy(source, source + n, keys);
}

// Exclusive prefix sum in three passes like a device scan: tile totals, a scan of the totals, then
// each tile from its offset. Reads each item before writing its result, so `out` may equal `in`.
// Sums wrap around modulo 2^32 like the GPU's int32 additions.
void exclusive_sum(const int32_t* in, int32_t* out, int n, uint32_t* tile_totals) {
  const int tiles = (n + kScanTile - 1) / kScanTile;
  for (int t = 0; t < tiles; ++t) {
    uint32_t total = 0;
    for (int i = t * kScanTile; i < std::min(n, (t + 1) * kScanTile); ++i) total += uint32_t(in[i]);
    tile_totals[t] = total;
  }
  uint32_t running = 0;
  for (int t = 0; t < tiles; ++t) running += std::exchange(tile_totals[t], running);
  for (int t = 0; t < tiles; ++t) {
    uint32_t sum = tile_totals[t];
    for (int i = t * kScanTile; i < std::min(n, (t + 1) * kScanTile); ++i) {
      const uint32_t item = uint32_t(in[i]);
      out[i] = int32_t(sum);
      sum += item;
    }
  }
}

}  // namespace
}  // namespace cuda_emulator

using namespace cuda_emulator;

cudaError_t cub::DeviceRadixSort::SortKeys(void* d_temp_storage, size_t& temp_storage_bytes,
                                           const uint64_t* d_keys_in, uint64_t* d_keys_out, int num_items,
                                           int begin_bit, int end_bit, cudaStream_t stream) {
  if (num_items < 0 || begin_bit < 0 || end_bit > 64 || begin_bit > end_bit) return cudaErrorInvalidValue;
  const size_t needed = sort_storage_bytes(num_items);
  if (d_temp_storage == nullptr) {
    temp_storage_bytes = needed;
    return cudaSuccess;
  }
  if (temp_storage_bytes < needed) return cudaErrorInvalidValue;
  if (num_items == 0) return cudaSuccess;
  const std::string call = "cub::DeviceRadixSort::SortKeys(num_items=" + std::to_string(num_items) + ", bits " +
                           std::to_string(begin_bit) + ".." + std::to_string(end_bit) + ")";
  const size_t key_bytes = size_t(num_items) * sizeof(uint64_t);
  require_device_memory(call, "d_keys_in", d_keys_in, key_bytes);
  require_device_memory(call, "d_keys_out", d_keys_out, key_bytes);
  require_device_memory(call, "d_temp_storage", d_temp_storage, needed);
  if (ranges_overlap(d_keys_in, key_bytes, d_keys_out, key_bytes))
    fail(call + ": d_keys_out overlaps d_keys_in; this SortKeys overload does not sort in place");
  if (ranges_overlap(d_temp_storage, needed, d_keys_in, key_bytes) ||
      ranges_overlap(d_temp_storage, needed, d_keys_out, key_bytes))
    fail(call + ": the temporary storage overlaps the keys");
  enqueue(stream, call, [=] {
    std::copy(d_keys_in, d_keys_in + num_items, d_keys_out);
    radix_sort(d_keys_out, static_cast<uint64_t*>(d_temp_storage), num_items, begin_bit, end_bit);
  });
  return cudaSuccess;
}

cudaError_t cub::DeviceScan::ExclusiveSum(void* d_temp_storage, size_t& temp_storage_bytes, const int32_t* d_in,
                                          int32_t* d_out, int num_items, cudaStream_t stream) {
  if (num_items < 0) return cudaErrorInvalidValue;
  const size_t needed = scan_storage_bytes(num_items);
  if (d_temp_storage == nullptr) {
    temp_storage_bytes = needed;
    return cudaSuccess;
  }
  if (temp_storage_bytes < needed) return cudaErrorInvalidValue;
  if (num_items == 0) return cudaSuccess;
  const std::string call = "cub::DeviceScan::ExclusiveSum(num_items=" + std::to_string(num_items) + ")";
  const size_t item_bytes = size_t(num_items) * sizeof(int32_t);
  require_device_memory(call, "d_in", d_in, item_bytes);
  require_device_memory(call, "d_out", d_out, item_bytes);
  require_device_memory(call, "d_temp_storage", d_temp_storage, needed);
  if (d_in != d_out && ranges_overlap(d_in, item_bytes, d_out, item_bytes))
    fail(call + ": d_out overlaps d_in without being equal to it");
  if (ranges_overlap(d_temp_storage, needed, d_in, item_bytes) ||
      ranges_overlap(d_temp_storage, needed, d_out, item_bytes))
    fail(call + ": the temporary storage overlaps the items");
  enqueue(stream, call, [=] { exclusive_sum(d_in, d_out, num_items, static_cast<uint32_t*>(d_temp_storage)); });
  return cudaSuccess;
}
