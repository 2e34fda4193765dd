// Loader throughput: images/s of decode + augment (flip) + batch assembly, for 112 and 224 outputs,
// JPEG vs raw shards, by number of worker threads; and the single-thread cost per image without the
// loader's machinery. Packs 1,000 UTKFace images (colour, like MS1M) from ../shared/data first, or
// from the folder $CUFACE_LOADER_IMAGES (UTKFace-named files; the GPU machine has no ../shared).
//
//   bench/bench_loader [--benchmark_filter=...]
// Reported as items_per_second (images/s). Results: bench/results/data.md.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <map>
#include <thread>

#include <unistd.h>

#include "face/loader/loader.h"
#include "face/pack/packer.h"

namespace fs = std::filesystem;
using namespace cuface;

namespace {

const std::string kSource = std::getenv("CUFACE_LOADER_IMAGES") ? std::getenv("CUFACE_LOADER_IMAGES")
                                                                 : std::string(CUFACE_SHARED_DATA) + "/utkface";
constexpr int kImages = 1000;

// PREFIX of a pack of kImages UTKFace images at `size` with `encoding`, made once per run.
std::string pack_for(int size, Encoding encoding) {
  // A scratch folder of links to the first kImages files, removed at exit.
  struct Scratch {
    fs::path dir = fs::temp_directory_path() / ("cuface-bench-loader-" + std::to_string(::getpid()));
    Scratch() {
      fs::create_directories(dir / "subset");
      std::vector<fs::path> files;
      for (const auto& entry : fs::directory_iterator(kSource)) files.push_back(entry.path());
      std::sort(files.begin(), files.end());
      for (int i = 0; i < kImages && i < int(files.size()); ++i)
        fs::create_symlink(files[size_t(i)], dir / "subset" / files[size_t(i)].filename());
    }
    ~Scratch() { fs::remove_all(dir); }
  };
  static std::map<std::pair<int, int>, std::string> made;
  static const Scratch scratch;
  const fs::path& folder = scratch.dir;
  auto key = std::make_pair(size, int(encoding));
  if (!made.count(key)) {
    PackOptions o;
    o.input = (folder / "subset").string();
    o.format = "utkface";
    o.out = (folder / (std::to_string(size) + encoding_name(encoding))).string();
    o.size = size;
    o.encoding = encoding;
    pack_images(o);
    made[key] = o.out;
  }
  return made[key];
}

// Args: output size, encoding (0 raw, 1 jpeg), worker threads.
void BM_Loader(benchmark::State& state) {
  if (!fs::exists(kSource)) {
    state.SkipWithError((kSource + " not found").c_str());
    return;
  }
  const int size = int(state.range(0));
  LoaderOptions o;
  o.packs = {pack_for(size, Encoding(state.range(1)))};
  o.batch_size = 128;
  o.workers = int(state.range(2));
  o.prefetch = 4;
  o.image_size = size;
  o.augment.flip = true;
  Loader loader(o);
  loader.next();  // workers started and the ring primed
  const std::clock_t cpu_start = std::clock();  // process CPU time, all threads
  for (auto _ : state) {
    Batch batch = loader.next();
    benchmark::DoNotOptimize(batch.images.raw());
  }
  const double cpu_seconds = double(std::clock() - cpu_start) / CLOCKS_PER_SEC;
  const double images = double(state.iterations() * o.batch_size);
  state.SetItemsProcessed(int64_t(images));
  state.counters["per_worker"] = benchmark::Counter(images / o.workers, benchmark::Counter::kIsRate);
  // Images per second of CPU time spent by the whole process: what one fully used core delivers,
  // independent of other load on a shared machine.
  state.counters["per_cpu_second"] = images / cpu_seconds;
}

// One thread, no loader: record lookup + CRC + decode + render (flip) into a buffer.
void BM_SampleSingleThread(benchmark::State& state) {
  if (!fs::exists(kSource)) {
    state.SkipWithError((kSource + " not found").c_str());
    return;
  }
  const int size = int(state.range(0));
  const Pack pack(pack_for(size, Encoding(state.range(1))));
  const bool check_crc = state.range(2) != 0;
  std::vector<uint8_t> out(size_t(size) * size * 3);
  Image decoded;
  std::string error;
  AugmentOptions augment;
  int64_t i = 0;
  for (auto _ : state) {
    const int64_t r = i++ % pack.size();
    if (check_crc) pack.check(r, error);
    const RecordView view = pack.record(r);
    ImageView source{view.data, view.width, view.height, 3};
    if (view.encoding != Encoding::Raw) {
      decode_image(view.data, view.size, decoded, error);
      source = decoded.view();
    }
    Philox rng(1, uint64_t(r));
    render_sample(source, size, augment, rng, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations());
}

void loader_args(benchmark::internal::Benchmark* b) {
  const int cores = int(std::max(1u, std::thread::hardware_concurrency()));
  for (int size : {112, 224})
    for (int encoding : {1, 0})
      for (int workers = 1; workers <= cores; workers *= 2) b->Args({size, encoding, workers});
}

}  // namespace

BENCHMARK(BM_SampleSingleThread)->ArgNames({"size", "jpeg", "crc"})->ArgsProduct({{112, 224}, {1, 0}, {1, 0}});
BENCHMARK(BM_Loader)->ArgNames({"size", "jpeg", "workers"})->Apply(loader_args)->UseRealTime()->MinTime(1.0);

BENCHMARK_MAIN();
