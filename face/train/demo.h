// The built-in default job (the README's first command): train the tiny network on faces that need
// nothing but this program, then report verification accuracy on people it never saw.
//
// With the shared data present (default ../shared/data): LFW people with at least 4 images, aligned
// with landmarks5.txt; 85% of the people train, the rest are held out for verification. Without it:
// synthetic identities drawn by the program (each a random pattern of coloured blobs, each image of
// it shifted, rescaled, re-lit and noisy), split the same way.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "face/train/trainer.h"

namespace cuface {

struct DemoOptions {
  std::string data = "../shared/data";  // where lfw/ is looked for
  std::string out = "runs/demo";        // packs and the run folder go here (replaced)
  bool synthetic = false;               // force the synthetic faces
  int64_t steps = 600;
  int batch = 64;
  int input_size = 64;  // 64 px aligned faces: 3x faster than 112 on a CPU, enough for the tiny network
  int64_t max_identities = 0;           // 0: all eligible LFW people (tests use fewer)
  int64_t valid_pairs = 2000;
  // A few hundred classes and a tiny network train best with a gentler margin than ArcFace's
  // defaults for 85k identities (s = 64, m = 0.5): a smaller scale keeps the softmax from saturating.
  std::string margin = "cosface";
  float margin_s = 16.0f, margin_m = 0.1f;
  int workers = 2;
  uint64_t seed = 1;
  std::string device = "cpu";           // cpu | cuda | auto
  std::string precision = "auto";       // auto | fp32 | tf32 | bf16 (as cuface train --precision)
  bool quiet = false;                   // no per-step lines (tests)
};

struct DemoResult {
  std::string dataset;                  // "LFW (aligned)" or "synthetic"
  int64_t train_people = 0, train_images = 0, held_out_people = 0, held_out_images = 0;
  double first_loss = 0;                // mean loss of the first 10 steps (loss_debug.csv)
  double final_loss = 0;                // mean loss of the last 10
  int64_t pairs = 0;                    // held-out verification pairs
  double accuracy_before = 0;           // held-out verification (best balanced accuracy over the original's
                                        // threshold grid, chosen on the same pairs) of the untrained net
  double accuracy = 0;                  // ... after training
  double kfold_mean = 0, kfold_std = 0; // 10-fold accuracy after training (each fold's threshold from the others)
  double seconds = 0;
  int stop_signal = 0;                  // SIGINT or SIGTERM when one stopped training (no figures then)
};

DemoResult run_demo(const DemoOptions& options);

// Draws `people` synthetic identities of `per_person` size x size PNG images each under
// root/personN/K.png; returns each person's name and image paths.
std::vector<std::pair<std::string, std::vector<std::string>>> write_synthetic_faces(const std::string& root,
                                                                                    int people, int per_person,
                                                                                    int size, uint64_t seed);

}  // namespace cuface
