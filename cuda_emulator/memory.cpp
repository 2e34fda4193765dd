#include "cuda_emulator/memory.h"

#include <dlfcn.h>
#include <signal.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <set>

#include "cuda_emulator/device.h"
#include "cuda_emulator/grid.h"

namespace cuda_emulator {
namespace {

// Allocations keep 16-byte alignment (what cuface's kernels need) rather than cudaMalloc's 256, so
// that the guard page starts at most 15 bytes after the last byte.
constexpr size_t kAlignment = 16;

struct Allocation {
  char* mapping;
  size_t mapping_bytes;  // the pages holding the data; the guard page follows
  char* data;
  size_t bytes;
  bool live;
};

size_t page_size() {
  static const size_t page = size_t(sysconf(_SC_PAGESIZE));
  return page;
}

struct Memory {
  std::mutex mutex;
  std::map<const char*, Allocation> by_mapping;  // every allocation ever made, freed ones too
  std::map<const char*, size_t> pinned;           // pinned host blocks and their sizes
  size_t bytes_in_use = 0;
  bool open = false;
};

Memory& memory() {
  static Memory* instance = new Memory;  // never destroyed: static destructors may still free tensors
  return *instance;
}

// The allocation whose pages or guard page hold `address`, or null.
const Allocation* find(const void* address) {
  Memory& m = memory();
  auto it = m.by_mapping.upper_bound(static_cast<const char*>(address));
  if (it == m.by_mapping.begin()) return nullptr;
  --it;
  const Allocation& a = it->second;
  const char* p = static_cast<const char*>(address);
  return p < a.mapping + a.mapping_bytes + page_size() ? &a : nullptr;
}

void protect(const Allocation& a, int protection) {
  if (mprotect(a.mapping, a.mapping_bytes, protection) != 0) fail("mprotect failed on device memory");
}

}  // namespace

void* device_allocate(size_t bytes) {
  const size_t page = page_size();
  const size_t data_bytes = (std::max<size_t>(bytes, 1) + kAlignment - 1) / kAlignment * kAlignment;
  const size_t mapping_bytes = (data_bytes + page - 1) / page * page;
  void* mapping = mmap(nullptr, mapping_bytes + page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (mapping == MAP_FAILED) return nullptr;
  Allocation a{static_cast<char*>(mapping), mapping_bytes, static_cast<char*>(mapping) + mapping_bytes - data_bytes,
               bytes, true};
  Memory& m = memory();
  std::lock_guard<std::mutex> lock(m.mutex);
  protect(a, PROT_READ | PROT_WRITE);
  std::memset(a.data, 0xFF, data_bytes);
  if (!m.open) protect(a, PROT_NONE);
  m.by_mapping[a.mapping] = a;
  m.bytes_in_use += bytes;
  return a.data;
}

bool device_free(void* pointer) {
  Memory& m = memory();
  std::lock_guard<std::mutex> lock(m.mutex);
  auto* a = const_cast<Allocation*>(find(pointer));
  if (!a || !a->live || a->data != pointer) return false;
  a->live = false;
  m.bytes_in_use -= a->bytes;
  // Keep the address range reserved (a later use faults as "freed") but give the pages back.
  protect(*a, PROT_NONE);
  madvise(a->mapping, a->mapping_bytes, MADV_DONTNEED);
  return true;
}

bool is_device_range(const void* pointer, size_t bytes) {
  Memory& m = memory();
  std::lock_guard<std::mutex> lock(m.mutex);
  const Allocation* a = find(pointer);
  const char* p = static_cast<const char*>(pointer);
  return a && a->live && p >= a->data && p + bytes <= a->data + a->bytes;
}

size_t device_bytes_in_use() {
  std::lock_guard<std::mutex> lock(memory().mutex);
  return memory().bytes_in_use;
}

void* pinned_allocate(size_t bytes) {
  const size_t rounded = (std::max<size_t>(bytes, 1) + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded);
  if (!p) return nullptr;
  std::memset(p, 0xFF, rounded);  // never-written pinned memory reads as NaN too
  std::lock_guard<std::mutex> lock(memory().mutex);
  memory().pinned[static_cast<const char*>(p)] = bytes;
  return p;
}

bool pinned_free(void* pointer) {
  {
    std::lock_guard<std::mutex> lock(memory().mutex);
    if (memory().pinned.erase(static_cast<const char*>(pointer)) == 0) return false;
  }
  std::free(pointer);
  return true;
}

bool is_pinned(const void* pointer, size_t bytes) {
  Memory& m = memory();
  std::lock_guard<std::mutex> lock(m.mutex);
  auto it = m.pinned.upper_bound(static_cast<const char*>(pointer));
  if (it == m.pinned.begin()) return false;
  --it;
  const char* p = static_cast<const char*>(pointer);
  return p >= it->first && p + bytes <= it->first + it->second;
}

void open_device_memory() {
  Memory& m = memory();
  std::lock_guard<std::mutex> lock(m.mutex);
  if (m.open) return;
  for (auto& [mapping, a] : m.by_mapping)
    if (a.live) protect(a, PROT_READ | PROT_WRITE);
  m.open = true;
}

void close_device_memory() {
  Memory& m = memory();
  std::lock_guard<std::mutex> lock(m.mutex);
  if (!m.open) return;
  for (auto& [mapping, a] : m.by_mapping)
    if (a.live) protect(a, PROT_NONE);
  m.open = false;
}

std::string describe_code_address(const void* address) {
  Dl_info info{};
  if (!dladdr(address, &info) || !info.dli_fname) return "";
  char command[1024];
  std::snprintf(command, sizeof command, "addr2line -f -C -i -e '%s' 0x%zx 2>/dev/null", info.dli_fname,
                size_t(static_cast<const char*>(address) - static_cast<const char*>(info.dli_fbase)));
  std::string text;
  if (FILE* pipe = popen(command, "r")) {
    char line[1024];
    std::string function;
    // addr2line prints function / file:line pairs, innermost (inlined) first: keep the first pair.
    if (std::fgets(line, sizeof line, pipe)) function = line;
    if (std::fgets(line, sizeof line, pipe)) text = line;
    pclose(pipe);
    if (!function.empty()) function.pop_back();
    if (!text.empty()) text.pop_back();
    if (text.rfind("??", 0) == 0) return "";
    text += " (" + function + ")";
  }
  return text;
}

namespace {

void explain_fault(int signal, siginfo_t* info, void* context) {
  end_probe_at_fault();
  const char* address = static_cast<const char*>(info->si_addr);
  const Allocation* a = find(address);  // no lock: we are about to abort either way
  const bool write = (static_cast<ucontext_t*>(context)->uc_mcontext.gregs[REG_ERR] & 2) != 0;
  const void* pc = reinterpret_cast<const void*>(static_cast<ucontext_t*>(context)->uc_mcontext.gregs[REG_RIP]);
  if (!a) {
    const std::string thread = describe_running_thread();
    if (thread.empty()) {  // host code, not emulated memory: crash as it would without the emulator
      ::signal(signal, SIG_DFL);
      return;
    }
    char text[128];
    std::snprintf(text, sizeof text, "invalid %s at address %p (in no device allocation)", write ? "write" : "read",
                  static_cast<const void*>(address));
    const std::string code = describe_code_address(pc);
    fail(std::string(text) + " in " + thread + (code.empty() ? "" : ", at " + code));
  }
  std::string what;
  char where[256];
  if (address >= a->data + a->bytes)
    std::snprintf(where, sizeof where, "%zu bytes past the end of a %zu-byte allocation",
                  size_t(address - (a->data + a->bytes)), a->bytes);
  else if (address < a->data)
    std::snprintf(where, sizeof where, "%zu bytes before the start of a %zu-byte allocation",
                  size_t(a->data - address), a->bytes);
  else
    std::snprintf(where, sizeof where, "byte %zu of a %zu-byte allocation", size_t(address - a->data), a->bytes);
  const std::string thread = describe_running_thread();
  if (!a->live)
    what = std::string(write ? "write to" : "read of") + " freed device memory (" + where + ")";
  else if (address < a->data || address >= a->data + a->bytes)
    what = std::string("out-of-bounds ") + (write ? "write" : "read") + ": " + where;
  else if (thread.empty())
    what = std::string("host code ") + (write ? "wrote" : "read") +
           " device memory without a copy (" + where + "): use cudaMemcpy and synchronise first";
  else
    what = std::string(write ? "write to" : "read of") + " device memory while closed (" + where + ")";
  const std::string code = describe_code_address(pc);
  fail(what + (thread.empty() ? "" : " in " + thread) + (code.empty() ? "" : ", at " + code));
}

}  // namespace

void install_fault_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    // The handler must run on its own stack: a fault may be a fiber's stack overflow.
    static char alternate_stack[64 * 1024];
    stack_t stack{};
    stack.ss_sp = alternate_stack;
    stack.ss_size = sizeof alternate_stack;
    sigaltstack(&stack, nullptr);
    struct sigaction action {};
    action.sa_sigaction = explain_fault;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigaction(SIGSEGV, &action, nullptr);
    sigaction(SIGBUS, &action, nullptr);
  });
}

}  // namespace cuda_emulator
