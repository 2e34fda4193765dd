#include "face/eval/identification.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>

#include "engine/philox.h"
#include "kernels/gemm.h"
#include "kernels/topk.h"

namespace cuface::eval {

namespace {

void check_matrix(const Tensor& t, const char* what) {
  CUFACE_CHECK(t.defined() && t.rank() == 2 && t.dtype() == DType::F32,
               std::string(what) + " must be an f32 matrix, got " + (t.defined() ? t.str() : "undefined"));
}

// The CPU f32 values of a matrix on any device.
Tensor on_cpu(const Tensor& t) { return t.is_cuda() ? t.to(Device::CPU) : t; }

}  // namespace

Tensor normalised_rows(const Tensor& rows) {
  check_matrix(rows, "normalised_rows: rows");
  const Tensor in = on_cpu(rows);
  Tensor out = Tensor::empty(in.shape());
  const int64_t dim = in.size(1);
  for (int64_t i = 0; i < in.size(0); ++i) {
    const float* x = in.data<float>() + i * dim;
    double squares = 0;
    for (int64_t j = 0; j < dim; ++j) squares += double(x[j]) * double(x[j]);
    CUFACE_CHECK(squares > 0 && std::isfinite(squares),
                 "row " + std::to_string(i) + " has no direction (zero or not finite): it cannot be normalised");
    const double scale = 1.0 / std::sqrt(squares);
    for (int64_t j = 0; j < dim; ++j) out.data<float>()[i * dim + j] = float(double(x[j]) * scale);
  }
  return out;
}

Tensor identity_templates(const Tensor& rows, std::span<const int> identity, int identities) {
  check_matrix(rows, "identity_templates: rows");
  CUFACE_CHECK(int64_t(identity.size()) == rows.size(0), "identity_templates: " + std::to_string(identity.size()) +
                                                             " identities for " + std::to_string(rows.size(0)) + " rows");
  const Tensor unit = normalised_rows(rows);
  const int64_t dim = unit.size(1);
  // The mean's direction is the sum's: sum in double, then normalise.
  std::vector<double> sum(size_t(identities) * size_t(dim), 0.0);
  std::vector<int64_t> count(size_t(identities), 0);
  for (size_t i = 0; i < identity.size(); ++i) {
    const int t = identity[i];
    CUFACE_CHECK(t >= 0 && t < identities, "identity_templates: row " + std::to_string(i) + " has identity " +
                                               std::to_string(t) + ", outside 0.." + std::to_string(identities - 1));
    ++count[size_t(t)];
    const float* x = unit.data<float>() + int64_t(i) * dim;
    for (int64_t j = 0; j < dim; ++j) sum[size_t(t) * size_t(dim) + size_t(j)] += x[j];
  }
  Tensor templates = Tensor::empty({identities, dim});
  for (int t = 0; t < identities; ++t) {
    CUFACE_CHECK(count[size_t(t)] > 0, "identity_templates: identity " + std::to_string(t) + " has no row");
    const double* s = sum.data() + size_t(t) * size_t(dim);
    double squares = 0;
    for (int64_t j = 0; j < dim; ++j) squares += s[j] * s[j];
    CUFACE_CHECK(squares > 0, "identity_templates: the rows of identity " + std::to_string(t) + " cancel out");
    const double scale = 1.0 / std::sqrt(squares);
    for (int64_t j = 0; j < dim; ++j) templates.data<float>()[t * dim + j] = float(s[j] * scale);
  }
  return templates;
}

Candidates search_gallery(Context& ctx, const Tensor& gallery, const Tensor& probes, int k,
                          const SearchOptions& options) {
  check_matrix(gallery, "search_gallery: the gallery");
  check_matrix(probes, "search_gallery: the probes");
  CUFACE_CHECK(gallery.device() == ctx.device(), "search_gallery: the gallery is on " +
                                                     std::string(device_name(gallery.device())) + ", the context on " +
                                                     device_name(ctx.device()));
  CUFACE_CHECK(probes.size(1) == gallery.size(1), "search_gallery: probes of " + std::to_string(probes.size(1)) +
                                                      " dimensions against a gallery of " +
                                                      std::to_string(gallery.size(1)));
  CUFACE_CHECK(k >= 1, "search_gallery: k must be at least 1");
  CUFACE_CHECK(gallery.size(0) >= 1 && gallery.size(0) <= int64_t(std::numeric_limits<int32_t>::max()),
               "search_gallery: the gallery must have 1 to 2^31 - 1 rows, it has " + std::to_string(gallery.size(0)));

  const int64_t rows = gallery.size(0), probe_count = probes.size(0);
  const int64_t block_rows = std::min(rows, options.block_rows > 0 ? options.block_rows : ctx.is_cuda() ? 65536 : 4096);
  const int64_t batch = std::max<int64_t>(1, std::min(options.probe_batch, probe_count));
  Candidates out;
  out.probes = probe_count;
  out.k = k;
  out.score.resize(size_t(probe_count) * size_t(k));
  out.row.resize(size_t(probe_count) * size_t(k));
  if (probe_count == 0) return out;

  // Allocated once: the block of scores (a flat buffer, viewed as [probes in batch, rows in block])
  // and the running lists.
  const Device device = ctx.device();
  Tensor block_memory = Tensor::empty({batch * block_rows}, DType::F32, device);
  Tensor best_score_memory = Tensor::empty({batch, k}, DType::F32, device);
  Tensor best_index_memory = Tensor::empty({batch, k}, DType::I32, device);
  for (int64_t p0 = 0; p0 < probe_count; p0 += batch) {
    const int64_t n = std::min(batch, probe_count - p0);
    const Tensor probe_rows = probes.device() == device ? probes.slice(p0, p0 + n) : probes.slice(p0, p0 + n).to(device);
    Tensor best_score = best_score_memory.slice(0, n), best_index = best_index_memory.slice(0, n);
    clear_top_k(ctx, best_score, best_index);
    for (int64_t g0 = 0; g0 < rows; g0 += block_rows) {
      const int64_t m = std::min(block_rows, rows - g0);
      Tensor scores = block_memory.slice(0, n * m).reshape({n, m});
      gemm(ctx, false, true, 1.0f, probe_rows, gallery.slice(g0, g0 + m), 0.0f, scores);
      merge_top_k(ctx, scores, g0, best_score, best_index);
    }
    const Tensor score_here = on_cpu(best_score), index_here = on_cpu(best_index);
    std::memcpy(out.score.data() + p0 * k, score_here.raw(), score_here.bytes());
    std::memcpy(out.row.data() + p0 * k, index_here.raw(), index_here.bytes());
  }
  return out;
}

IdentificationSplit split_for_identification(std::span<const int> identity, int gallery_images,
                                             double unknown_fraction, uint64_t seed) {
  CUFACE_CHECK(gallery_images >= 1, "split_for_identification: gallery_images must be at least 1");
  CUFACE_CHECK(unknown_fraction >= 0 && unknown_fraction < 1,
               "split_for_identification: unknown_fraction must be in [0, 1)");
  std::map<int, std::vector<int64_t>> images_of;  // identity -> its images, in image order
  for (size_t i = 0; i < identity.size(); ++i)
    if (identity[i] >= 0) images_of[identity[i]].push_back(int64_t(i));

  std::vector<int> eligible;
  for (const auto& [id, images] : images_of)
    if (int64_t(images.size()) > gallery_images) eligible.push_back(id);
  const int64_t unknown = std::llround(unknown_fraction * double(eligible.size()));
  const std::vector<int64_t> order = philox_permutation(int64_t(eligible.size()), seed, 0);
  IdentificationSplit split;
  for (int64_t i = 0; i < int64_t(eligible.size()) - unknown; ++i) split.enrolled.push_back(eligible[size_t(order[size_t(i)])]);
  std::sort(split.enrolled.begin(), split.enrolled.end());
  CUFACE_CHECK(!split.enrolled.empty(), "no identity to enrol: " + std::to_string(eligible.size()) +
                                            " identities have more than " + std::to_string(gallery_images) +
                                            " images (--gallery-images), " + std::to_string(unknown) +
                                            " of them drawn as unknown");

  std::vector<int> truth(identity.size(), -1);
  for (size_t row = 0; row < split.enrolled.size(); ++row) {
    const int id = split.enrolled[row];
    const std::vector<int64_t>& images = images_of[id];
    const std::vector<int64_t> shuffled = philox_permutation(int64_t(images.size()), seed, 1 + uint64_t(id));
    for (size_t j = 0; j < images.size(); ++j) {
      const int64_t image = images[size_t(shuffled[j])];
      if (int(j) < gallery_images) {
        split.gallery_images.push_back(image);
        split.gallery_row.push_back(int(row));
        truth[size_t(image)] = -2;  // in the gallery: not a probe
      } else {
        truth[size_t(image)] = int(row);
      }
    }
  }
  for (size_t i = 0; i < identity.size(); ++i) {
    if (identity[i] < 0 || truth[i] == -2) continue;
    split.probe_images.push_back(int64_t(i));
    split.probe_truth.push_back(truth[i]);
  }
  return split;
}

int mate_rank(const Candidates& candidates, int64_t probe, int truth) {
  if (truth < 0) return 0;
  for (int r = 0; r < candidates.k; ++r)
    if (candidates.row_at(probe, r) == truth) return r + 1;
  return 0;
}

IdentificationResult evaluate_identification(const Candidates& candidates, std::span<const int> truth,
                                             std::span<const double> fpir_targets) {
  CUFACE_CHECK(int64_t(truth.size()) == candidates.probes, "evaluate_identification: " + std::to_string(truth.size()) +
                                                               " truths for " + std::to_string(candidates.probes) +
                                                               " probes");
  IdentificationResult result;
  result.cmc.assign(size_t(candidates.k), 0.0);
  // Open set: each probe is answered by its best candidate. A mated probe can be a true positive
  // only when that candidate is its own identity; its score then decides, as a non-mated probe's
  // best score decides whether it is a false positive.
  std::vector<double> non_mated_best, correct_best;  // best scores of non-mated / rightly answered mated probes
  for (int64_t p = 0; p < candidates.probes; ++p) {
    const int rank = mate_rank(candidates, p, truth[size_t(p)]);
    if (truth[size_t(p)] < 0) {
      ++result.non_mated;
      non_mated_best.push_back(candidates.score_at(p, 0));
      continue;
    }
    ++result.mated;
    if (rank > 0)
      for (int r = rank - 1; r < candidates.k; ++r) result.cmc[size_t(r)] += 1;
    if (rank == 1) correct_best.push_back(candidates.score_at(p, 0));
  }
  CUFACE_CHECK(result.mated > 0, "evaluate_identification: no mated probe (no probe's identity is enrolled)");
  for (double& c : result.cmc) c /= double(result.mated);

  std::sort(non_mated_best.begin(), non_mated_best.end());
  std::sort(correct_best.begin(), correct_best.end());
  for (double target : fpir_targets) {
    CUFACE_CHECK(target > 0 && target <= 1, "evaluate_identification: an FPIR target must be in (0, 1]");
    // TPIR counts every mated probe, answered rightly or not.
    result.open_set.push_back(operating_point(non_mated_best, correct_best, double(result.mated), target));
  }
  return result;
}

}  // namespace cuface::eval
