#pragma once
// ThreadSanitizer annotations for buffers handed between threads through ZeroMQ. Debian's
// libzmq is not instrumented, so TSan cannot see that its pipes order a zero-copy message's
// writer before its reader. Releasing at the hand-over and acquiring on the other side, on the
// buffer's own address, tells it exactly that and nothing more. No-ops without TSan.
#if defined(__SANITIZE_THREAD__)
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
#endif

namespace reqbus::detail {

inline void tsan_release(const void* addr) {
#if defined(__SANITIZE_THREAD__)
  __tsan_release(const_cast<void*>(addr));
#else
  (void)addr;
#endif
}

inline void tsan_acquire(const void* addr) {
#if defined(__SANITIZE_THREAD__)
  __tsan_acquire(const_cast<void*>(addr));
#else
  (void)addr;
#endif
}

}  // namespace reqbus::detail
