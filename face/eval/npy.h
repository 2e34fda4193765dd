// Embeddings on disk: a float32 2-D NumPy `.npy` file (format 1.0, header padded to 64 bytes) with
// one row per image, and beside it a text file of the same stem (`emb.npy` -> `emb.txt`) listing the
// image of each row, one path per line. numpy.load reads the matrix as written.
#pragma once
#include <filesystem>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace cuface::eval {

// `matrix` must be a CPU f32 tensor of rank 2. Written atomically (temporary name, then rename).
void write_npy(const std::filesystem::path& file, const Tensor& matrix);
// Reads a 2-D little-endian float32 or float64 (converted) C-order array as a CPU f32 tensor.
// Format versions 1.0 to 3.0; any other content is an error naming the file.
Tensor read_npy(const std::filesystem::path& file);

struct Embeddings {
  Tensor matrix;                   // [images, dim] f32
  std::vector<std::string> paths;  // row i is the embedding of paths[i]
};

std::filesystem::path embedding_list_path(const std::filesystem::path& npy);  // emb.npy -> emb.txt
void write_embeddings(const std::filesystem::path& npy, const Embeddings& embeddings);
// `list` defaults to embedding_list_path(npy); its line count must equal the matrix's rows.
Embeddings read_embeddings(const std::filesystem::path& npy, const std::filesystem::path& list = {});

}  // namespace cuface::eval
