// Face identification (1:N): who, among the enrolled people, is this face?
//
// A gallery holds one template per enrolled identity: the L2-normalised mean of the L2-normalised
// embeddings of its images. A probe is compared with every template by cosine similarity. The search
// is a GEMM of a batch of probes against one block of gallery rows at a time on the context's device
// (kernels/gemm.h), each block of scores merged into a running top-k (kernels/topk.h) and then
// overwritten by the next: memory beyond the gallery itself is one block of scores, probe_batch x
// block_rows floats, whatever the gallery's size. The gallery costs 4 bytes per dimension per row
// (f32): 2 KiB per 512-d template, 2 GiB for a million.
//
// The figures follow NIST FRVT 1:N and the IJB-C 1:N protocol. A probe is mated when its identity is
// enrolled, non-mated otherwise.
//   closed set  a mated probe's rank is the position of its identity in its candidate list (1 = the
//               best score); CMC(r) is the fraction of mated probes of rank <= r (rank-1, rank-5).
//   open set    a probe is answered by its best candidate when that score is above a threshold t,
//               else "unknown". FPIR(t): non-mated probes answered (false positives) / non-mated
//               probes; TPIR(t): mated probes answered with their own identity / mated probes. At a
//               target FPIR f with N non-mated probes, floor(f N) false positives are allowed and t
//               is the (floor(f N) + 1)-th highest best score of a non-mated probe (no interpolation,
//               the rule of tar_at_far in metrics.h); unsupported when floor(f N) = 0.
// scripts/make_identification_fixture.py recomputes templates, candidates and figures with numpy on
// embeddings of real faces; tests/face/test_identification.cpp compares.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "engine/context.h"
#include "face/eval/metrics.h"

namespace cuface::eval {

// ---- templates -------------------------------------------------------------------------------------

// Each row divided by its length (computed in double); a CPU f32 copy. A zero row is an error.
Tensor normalised_rows(const Tensor& rows);

// One template per identity: the normalised mean of the normalised rows with identity[i] == t, for
// t = 0 .. identities - 1. An identity without a row is an error.
Tensor identity_templates(const Tensor& rows, std::span<const int> identity, int identities);

// ---- search ------------------------------------------------------------------------------------------

struct SearchOptions {
  int64_t probe_batch = 1024;  // probes per GEMM
  int64_t block_rows = 0;      // gallery rows per GEMM; 0: 4096 on the CPU, 65536 on a GPU
};

// Each probe's k best gallery rows, best first (a higher score first; among equal scores the lower
// row, as a stable sort). Where the gallery has fewer than k rows the list ends in (-inf, -1).
struct Candidates {
  int64_t probes = 0;
  int k = 0;
  std::vector<float> score;  // [probes, k]
  std::vector<int32_t> row;  // [probes, k]
  float score_at(int64_t probe, int rank) const { return score[size_t(probe * k + rank)]; }
  int32_t row_at(int64_t probe, int rank) const { return row[size_t(probe * k + rank)]; }
};

// gallery [rows, D] f32 on ctx's device (normalised rows: the scores are cosines); probes [P, D] f32
// on any device. k >= 1; rows up to 2^31 - 1.
Candidates search_gallery(Context& ctx, const Tensor& gallery, const Tensor& probes, int k,
                          const SearchOptions& options = {});

// ---- evaluation --------------------------------------------------------------------------------------

// The gallery/probe split of identity-labelled images (identity[i] >= 0; -1: unlabelled, left out).
//   1. Identities with at least gallery_images + 1 images can be enrolled; a Philox(seed, 0)
//      permutation of them (in identity order) decides: all but round(unknown_fraction x count) of
//      them, the first in the permutation, are enrolled. Template rows follow identity order.
//   2. An enrolled identity's images in Philox(seed, 1 + identity) permutation order: the first
//      gallery_images make its template, the others are its mated probes.
//   3. Every image of an identity not enrolled (drawn as unknown, or with too few images) is a
//      non-mated probe.
// Probes are listed in image order.
struct IdentificationSplit {
  std::vector<int> enrolled;              // identity of each template row
  std::vector<int64_t> gallery_images;    // image indices, by template row
  std::vector<int> gallery_row;           // template row of each gallery image
  std::vector<int64_t> probe_images;      // image indices
  std::vector<int> probe_truth;           // template row of each probe's identity, -1 non-mated
};
IdentificationSplit split_for_identification(std::span<const int> identity, int gallery_images,
                                             double unknown_fraction, uint64_t seed);

// Position (1-based) of the probe's own template in its candidate list; 0 when it is not among the
// k candidates or the probe is non-mated.
int mate_rank(const Candidates& candidates, int64_t probe, int truth);

struct IdentificationResult {
  int64_t mated = 0, non_mated = 0;
  std::vector<double> cmc;          // cmc[r - 1] = CMC(r), r = 1 .. k
  std::vector<TarAtFar> open_set;   // far_target = the FPIR target, tar = TPIR, far = the FPIR reached,
                                    // threshold = t (a cosine; answered when the score is above it)
};
// truth[p]: probe p's template row, -1 for a non-mated probe. Needs a mated probe; the open-set points
// need a non-mated one too (otherwise they are unsupported).
IdentificationResult evaluate_identification(const Candidates& candidates, std::span<const int> truth,
                                             std::span<const double> fpir_targets);

}  // namespace cuface::eval
