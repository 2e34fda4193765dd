// Fibers: one stack per emulated CUDA thread, switched by hand. A block of 256 threads is 256
// fibers; the block's scheduler (grid.cpp) resumes one, which runs until it finishes or waits at a
// barrier or warp operation (Fiber::suspend), then control returns to the scheduler.
// A switch saves only the callee-saved registers, so it costs a few nanoseconds (ucontext's
// swapcontext makes a system call per switch, which would dominate a million-thread grid).
#pragma once
#include <cstddef>
#include <functional>

namespace cuda_emulator {

class Fiber {
 public:
  Fiber();
  ~Fiber();
  Fiber(const Fiber&) = delete;
  Fiber& operator=(const Fiber&) = delete;

  // Runs `body` on this fiber from the start, until it returns or suspends.
  void start(const std::function<void()>* body);
  // Continues after a suspend(), until the body returns or suspends again.
  void resume();
  bool finished() const { return finished_; }
  // Called on a fiber: back to whoever started or resumed it.
  static void suspend();
  // Called on a fiber: abandon its body (a probe that learnt what it needed), as if it returned.
  [[noreturn]] static void abandon();

 private:
  static void entry();
  void switch_in();

  void* stack_ = nullptr;
  size_t stack_bytes_ = 0;
  void* stack_pointer_ = nullptr;  // saved while suspended
  void* caller_ = nullptr;         // the scheduler's saved stack pointer while this fiber runs
  const std::function<void()>* body_ = nullptr;
  bool finished_ = true;
};

}  // namespace cuda_emulator
