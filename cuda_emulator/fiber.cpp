#include "cuda_emulator/fiber.h"

#include <sys/mman.h>
#include <unistd.h>

#include "cuda_emulator/device.h"

#if !defined(__x86_64__)
#error "the CUDA emulator's fibers switch stacks with x86-64 assembly; port switch_stacks for this CPU"
#endif

// switch_stacks(save, next): pushes the callee-saved registers and the SSE/x87 control words on the
// current stack, stores the stack pointer in *save, loads `next` and pops the same from there. A
// fresh fiber's stack is laid out as if it had been switched away from just before fiber_start.
extern "C" void cuda_emulator_switch_stacks(void** save, void* next);
asm(R"(
  .text
  .globl cuda_emulator_switch_stacks
  .type cuda_emulator_switch_stacks, @function
cuda_emulator_switch_stacks:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size cuda_emulator_switch_stacks, .-cuda_emulator_switch_stacks
)");

namespace cuda_emulator {
namespace {
// 64 KiB of stack per thread (kernels keep little on the stack), plus a guard page below it so that
// an overflow faults instead of corrupting the neighbouring fiber.
constexpr size_t kStackBytes = 64 * 1024;
thread_local Fiber* running = nullptr;
}  // namespace

Fiber::Fiber() {
  const size_t page = size_t(sysconf(_SC_PAGESIZE));
  stack_bytes_ = kStackBytes + page;
  stack_ = mmap(nullptr, stack_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (stack_ == MAP_FAILED) fail("cannot map a fiber stack");
  mprotect(stack_, page, PROT_NONE);
}

Fiber::~Fiber() { munmap(stack_, stack_bytes_); }

void Fiber::start(const std::function<void()>* body) {
  body_ = body;
  finished_ = false;
  // The initial frame popped by switch_stacks: control words, six registers, then the return
  // address `entry`. After the `ret`, rsp must be 8 mod 16, as at any function's entry.
  auto* top = reinterpret_cast<uint64_t*>((reinterpret_cast<uintptr_t>(stack_) + stack_bytes_) & ~uintptr_t(15));
  uint64_t* frame = top - 9;
  frame[0] = 0x1F80 | (uint64_t(0x037F) << 32);  // MXCSR: all exceptions masked; x87: 64-bit precision
  for (int r = 1; r <= 6; ++r) frame[r] = 0;     // r15, r14, r13, r12, rbx, rbp
  frame[7] = reinterpret_cast<uint64_t>(&Fiber::entry);
  frame[8] = 0;  // entry never returns: a fake return address keeps the alignment rule
  stack_pointer_ = frame;
  switch_in();
}

void Fiber::resume() { switch_in(); }

void Fiber::switch_in() {
  Fiber* outer = running;
  running = this;
  cuda_emulator_switch_stacks(&caller_, stack_pointer_);
  running = outer;
}

void Fiber::suspend() {
  Fiber* self = running;
  cuda_emulator_switch_stacks(&self->stack_pointer_, self->caller_);
}

void Fiber::entry() {
  Fiber* self = running;
  (*self->body_)();
  abandon();
}

void Fiber::abandon() {
  Fiber* self = running;
  self->finished_ = true;
  cuda_emulator_switch_stacks(&self->stack_pointer_, self->caller_);
  __builtin_unreachable();  // a finished fiber is only ever restarted from the top
}

}  // namespace cuda_emulator
