// The trainer: the steps of docs/design.md's data flow, one training step at a time.
//
//   loader (pinned batches) -> uploader (async copy, normalise) -> FaceModel::train_step (forward,
//   backward of the chosen tasks) -> SGD update -> LR schedule -> log line, CSV row, validation,
//   checkpoint
//
// Options of the loop: class-balanced batches (--ids-per-batch/--imgs-per-id, a sampler plugged into
// the loader: face/loader/balanced_sampler.h); --accumulate N (the step's forward and backward as N
// micro-batches: face/train/accumulate.h); multi --multi-mode alternate (step s trains task s mod T
// and updates only the backbone and that task's branch). A step is one update throughout: the loss
// row, the LR schedule, checkpoints and resume count updates.
//
// The run folder holds config.json (everything resolved), loss_debug.csv (a row per step),
// valid.csv (a row per validation figure), model-STEP.safetensors (torchvision names for the
// backbone), state-STEP.safetensors (momentum buffers, laid out as the weights) with state-STEP.json
// (step, loader position, LR schedule, best score, the logs' lengths), `latest` (the newest STEP),
// best.safetensors (the best validation so far) and, while a trainer writes it, train.lock
// (face/train/run_folder.h). Resuming reads them back and continues exactly: the same batches,
// dropout masks and updates, and logs holding every step once.
//
// Before step 1 everything the run reads is checked (packs, their labels for each task, the
// validation sets); a new run refuses a folder holding another run's files, a resume refuses a run
// that is already finished.
#pragma once
#include <atomic>
#include <memory>
#include <string>

#include "face/train/config.h"

namespace cuface {

class Communicator;

struct TrainSummary {
  int64_t steps = 0;           // steps done in total (including before a resume)
  double final_loss = 0;       // mean loss of the last logged steps
  double best_score = 0;       // best validation score (NaN without validation)
  std::string stopped_because; // "steps done", "learning rate below --min-lr", "interrupted by SIGINT"
  int stop_signal = 0;         // SIGINT or SIGTERM when one stopped the run, else 0
  bool leader = true;          // rank 0 (or the only process): the one that reports
  // --cuda-graph: "replayed" when the training step replayed from a CUDA graph, else "off: " and why
  // ("" on the CPU).
  std::string cuda_graph;
};

// Set by SIGINT (Ctrl-C) or SIGTERM during training: the trainer saves a checkpoint at the end of the
// current step and returns; `cuface train` then exits with 128 + the signal (130 for Ctrl-C).
std::atomic<int>& stop_signal();

// Trains with the communicator for this process (make_communicator: MPI/NCCL under mpirun, else one
// process).
TrainSummary train(const TrainConfig& config, bool resume);
// The same on a given communicator, made before (a GPU rank's Context uses its local_rank()).
TrainSummary train(const TrainConfig& config, bool resume, Communicator& comm);

}  // namespace cuface
