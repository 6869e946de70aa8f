// A std::mutex that spins a moment before it sleeps, where glibc offers that
// (PTHREAD_MUTEX_ADAPTIVE_NP). For locks held a few dozen instructions at a
// time by several busy threads, as the pool's queue is: a plain mutex sends a
// thread that finds it taken to the kernel at once, and on 2 cores the pool's
// tiny-task throughput lost about 15% to those sleeps and wake-ups.
// It works with std::condition_variable and std::unique_lock<std::mutex>.
#pragma once

#include <pthread.h>

#include <mutex>

namespace crew::detail {

class adaptive_mutex : public std::mutex {
 public:
  adaptive_mutex() {
#ifdef PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP
    pthread_mutexattr_t attributes;
    pthread_mutexattr_init(&attributes);
    pthread_mutexattr_settype(&attributes, PTHREAD_MUTEX_ADAPTIVE_NP);
    pthread_mutex_init(native_handle(), &attributes);  // not in use yet: the only re-initialisation
    pthread_mutexattr_destroy(&attributes);
#endif
  }
};

}  // namespace crew::detail
