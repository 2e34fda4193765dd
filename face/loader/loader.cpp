#include "face/loader/loader.h"

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <map>
#include <mutex>
#include <thread>

#include "engine/error.h"

namespace cuface {

struct Loader::State {
  LoaderOptions options;
  std::unique_ptr<PackSet> packs;
  int64_t records = 0;
  int64_t epoch_samples = 0;
  int64_t per_rank = 0;  // samples per rank per epoch
  int64_t steps = 0;     // batches per epoch

  // One ring buffer. `batch` is the global batch number (epoch * steps + step) it is assigned to.
  struct Slot {
    Tensor images;
    Tensor labels[4];  // identity, gender, age, record: i32 [batch_size] each
    int64_t batch = -1;
    int rows = 0;
    int filled = 0;
    bool leased = false;
  };
  std::vector<Slot> slots;

  std::mutex mutex;
  std::condition_variable work_ready;   // a slot was assigned, or stop
  std::condition_variable batch_ready;  // a slot was filled, or a worker failed
  int64_t claim_batch = 0;              // the next sample workers take: (claim_batch, claim_row)
  int claim_row = 0;
  int64_t deliver = 0;                  // the batch next() returns
  int64_t leases = 0;
  bool stopping = false;
  std::exception_ptr error;
  std::map<int64_t, std::shared_ptr<const std::vector<int64_t>>> permutations;
  std::vector<std::thread> threads;

  int rows_of(int64_t batch) const {
    const int64_t step = batch % steps;
    return int(std::min<int64_t>(options.batch_size, per_rank - step * options.batch_size));
  }

  void assign(Slot& slot, int64_t batch) {
    slot.batch = batch;
    slot.rows = rows_of(batch);
    slot.filled = 0;
  }

  // Call with the mutex held. Keeps the current epoch's and the next one's.
  std::shared_ptr<const std::vector<int64_t>> permutation(int64_t epoch) {
    auto it = permutations.find(epoch);
    if (it != permutations.end()) return it->second;
    auto order = std::make_shared<const std::vector<int64_t>>(
        options.sampler ? options.sampler(epoch) : philox_permutation(records, options.seed, uint64_t(epoch)));
    if (int64_t(order->size()) != epoch_samples)
      throw Error("loader: the sampler gave " + std::to_string(order->size()) + " samples for epoch " +
                  std::to_string(epoch) + ", expected " + std::to_string(epoch_samples));
    for (int64_t r : *order)
      if (r < 0 || r >= records) throw Error("loader: the sampler gave record " + std::to_string(r) + ", out of range");
    permutations.erase(permutations.begin(), permutations.lower_bound(epoch - 1));
    permutations.emplace(epoch, order);
    return order;
  }

  void fill(const Slot& slot, int64_t batch, int row, const std::vector<int64_t>& order, Image& decoded) {
    const int64_t epoch = batch / steps, step = batch % steps;
    const int64_t position = (step * options.batch_size + row) * options.world_size + options.rank;
    const int64_t record = order[size_t(position % epoch_samples)];
    std::string error;
    if (options.check_crc && !packs->check(record, error)) throw Error(packs->describe(record) + ": " + error);
    const RecordView view = packs->record(record);
    ImageView source{view.data, view.width, view.height, view.channels};
    if (view.encoding != Encoding::Raw) {
      if (!decode_image(view.data, view.size, decoded, error)) throw Error(packs->describe(record) + ": " + error);
      source = decoded.view();
    }
    Philox rng(options.seed, (uint64_t(epoch) << 32) | uint64_t(record));
    const int size = options.image_size;
    render_sample(source, size, options.augment, rng, slot.images.data<uint8_t>() + size_t(row) * size * size * 3);
    slot.labels[0].data<int32_t>()[row] = view.labels.identity;
    slot.labels[1].data<int32_t>()[row] = view.labels.gender;
    slot.labels[2].data<int32_t>()[row] = view.labels.age;
    slot.labels[3].data<int32_t>()[row] = int32_t(record);
  }

  void work() {
    Image decoded;  // reused: one allocation per thread
    for (;;) {
      int64_t batch;
      int row;
      Slot* slot;
      std::shared_ptr<const std::vector<int64_t>> order;
      {
        std::unique_lock<std::mutex> lock(mutex);
        work_ready.wait(lock, [&] {
          return stopping || error || slots[size_t(claim_batch % int64_t(slots.size()))].batch == claim_batch;
        });
        if (stopping || error) return;
        batch = claim_batch;
        row = claim_row;
        slot = &slots[size_t(batch % int64_t(slots.size()))];
        try {
          order = permutation(batch / steps);
        } catch (...) {
          error = std::current_exception();
          batch_ready.notify_all();
          work_ready.notify_all();
          return;
        }
        if (++claim_row == slot->rows) {
          ++claim_batch;
          claim_row = 0;
        }
      }
      try {
        fill(*slot, batch, row, *order, decoded);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex);
        if (!error) error = std::current_exception();
        batch_ready.notify_all();
        work_ready.notify_all();
        return;
      }
      std::lock_guard<std::mutex> lock(mutex);
      if (++slot->filled == slot->rows) batch_ready.notify_all();
    }
  }
};

Loader::Loader(const LoaderOptions& options) : state_(std::make_shared<State>()) {
  State& s = *state_;
  s.options = options;
  const LoaderOptions& o = s.options;
  if (o.batch_size < 1) throw Error("loader: batch size must be positive");
  if (o.workers < 1) throw Error("loader: at least one worker thread is needed");
  if (o.prefetch < 2) throw Error("loader: prefetch must be at least 2 batch buffers");
  if (o.image_size < 8 || o.image_size > 1024) throw Error("loader: image size must be between 8 and 1024");
  if (o.world_size < 1 || o.rank < 0 || o.rank >= o.world_size)
    throw Error("loader: rank " + std::to_string(o.rank) + " outside world size " + std::to_string(o.world_size));
  s.packs = std::make_unique<PackSet>(o.packs);
  s.records = s.packs->size();
  if (s.records == 0) throw Error("loader: the packs hold no records");
  if (s.records > INT32_MAX) throw Error("loader: more than 2^31 records");
  s.epoch_samples = o.samples_per_epoch > 0 ? o.samples_per_epoch : s.records;
  s.per_rank = (s.epoch_samples + o.world_size - 1) / o.world_size;
  s.steps = o.drop_last ? s.per_rank / o.batch_size : (s.per_rank + o.batch_size - 1) / o.batch_size;
  if (s.steps == 0)
    throw Error("loader: batch size " + std::to_string(o.batch_size) + " exceeds the " + std::to_string(s.per_rank) +
                " samples each rank has per epoch (drop_last leaves no batch)");

  s.slots.resize(size_t(o.prefetch));
  const int64_t size = o.image_size;
  for (State::Slot& slot : s.slots) {
    slot.images = Tensor::empty_pinned({o.batch_size, size, size, 3}, DType::U8);
    for (Tensor& labels : slot.labels) labels = Tensor::empty_pinned({o.batch_size}, DType::I32);
  }
  start(0);
}

Loader::~Loader() { stop(); }

void Loader::start(int64_t first_batch) {
  State& s = *state_;
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    s.claim_batch = s.deliver = first_batch;
    s.claim_row = 0;
    s.error = nullptr;
    s.stopping = false;
    s.permutations.clear();
    for (int64_t k = 0; k < int64_t(s.slots.size()); ++k)
      s.assign(s.slots[size_t((first_batch + k) % int64_t(s.slots.size()))], first_batch + k);
  }
  for (int w = 0; w < s.options.workers; ++w) s.threads.emplace_back([state = state_.get()] { state->work(); });
}

void Loader::stop() {
  State& s = *state_;
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    s.stopping = true;
  }
  s.work_ready.notify_all();
  for (std::thread& t : s.threads) t.join();
  s.threads.clear();
}

Batch Loader::next() {
  State& s = *state_;
  std::unique_lock<std::mutex> lock(s.mutex);
  const int64_t g = s.deliver;
  const size_t j = size_t(g % int64_t(s.slots.size()));
  State::Slot& slot = s.slots[j];
  if (slot.leased)
    throw Error("loader: all " + std::to_string(s.slots.size()) +
                " batch buffers are held by the consumer; release a batch before asking for the next (or raise prefetch)");
  s.batch_ready.wait(lock, [&] { return s.error || (slot.batch == g && slot.filled == slot.rows); });
  if (s.error) std::rethrow_exception(s.error);

  slot.leased = true;
  ++s.leases;
  ++s.deliver;
  Batch batch;
  batch.images = slot.images.slice(0, slot.rows);
  batch.identity = slot.labels[0].slice(0, slot.rows);
  batch.gender = slot.labels[1].slice(0, slot.rows);
  batch.age = slot.labels[2].slice(0, slot.rows);
  batch.record = slot.labels[3].slice(0, slot.rows);
  batch.epoch = g / s.steps;
  batch.step = g % s.steps;
  std::shared_ptr<State> state = state_;
  batch.lease = std::shared_ptr<void>(nullptr, [state, j](void*) {
    std::lock_guard<std::mutex> guard(state->mutex);
    State::Slot& released = state->slots[j];
    released.leased = false;
    --state->leases;
    state->assign(released, released.batch + int64_t(state->slots.size()));
    state->work_ready.notify_all();
  });
  return batch;
}

LoaderPosition Loader::position() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return {state_->deliver / state_->steps, state_->deliver % state_->steps};
}

void Loader::seek(const LoaderPosition& position) {
  State& s = *state_;
  if (position.epoch < 0 || position.step < 0 || position.step >= s.steps)
    throw Error("loader: cannot seek to epoch " + std::to_string(position.epoch) + " step " +
                std::to_string(position.step) + " (" + std::to_string(s.steps) + " steps per epoch)");
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    if (s.leases > 0) throw Error("loader: release every batch before seek");
  }
  stop();
  start(position.epoch * s.steps + position.step);
}

int64_t Loader::steps_per_epoch() const { return state_->steps; }
int64_t Loader::samples_per_rank() const { return state_->per_rank; }
const PackSet& Loader::packs() const { return *state_->packs; }
const LoaderOptions& Loader::options() const { return state_->options; }

}  // namespace cuface
