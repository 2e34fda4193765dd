// safetensors: the checkpoint and fixture format shared with PyTorch/Hugging Face tooling.
//
//   [8 bytes]  N, the header length, unsigned little-endian
//   [N bytes]  JSON: {"<name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
//                     "__metadata__": {"<key>": "<string value>", ...}}   (metadata optional)
//   [rest]     the data section: each tensor's raw little-endian bytes at [begin, end), offsets
//              relative to the data section; together the tensors cover it exactly, without gaps
//              or overlaps.
//
// cuface reads and writes the dtypes it has: F32, BF16, F16, U8, I32, with at most 4 dimensions; it
// also reads I64 (PyTorch's BatchNorm num_batches_tracked) into I32, refusing values beyond 32 bits.
// Every inconsistency in a file is reported as a cuface::Error naming the file and the problem.
#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace cuface {

// Writes the tensors in the given order to `path + ".tmp"`, then renames it to `path`, so a crash
// never leaves a half-written file behind. CUDA tensors are copied to the host first: synchronize
// the context that computed them before saving (the copy does not wait for its stream).
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

struct SafetensorsFile {
  std::map<std::string, Tensor> tensors;  // CPU tensors that own their memory
  std::map<std::string, std::string> metadata;
};

SafetensorsFile load_safetensors(const std::string& path);

}  // namespace cuface
