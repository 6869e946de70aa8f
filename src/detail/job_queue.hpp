// The queue of a pool: jobs by priority, the highest first, and in the order
// queued within one priority. A job may also leave from anywhere (a
// cancellation, a timeout). The thread pool's and the process pool's.
#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <vector>

namespace crew::detail {

template <class Job>
class job_queue {
 public:
  void push(int priority, Job job) {
    levels_[priority].push_back(std::move(job));
    ++size_;
  }

  /// The first job of the highest priority. The queue must not be empty.
  Job pop() {
    auto first = levels_.begin();
    Job job = std::move(first->second.front());
    first->second.pop_front();
    if (first->second.empty()) levels_.erase(first);
    --size_;
    return job;
  }

  /// Takes `job` out wherever it waits; false if it is not queued.
  bool remove(int priority, const Job& job) {
    auto level = levels_.find(priority);
    if (level == levels_.end() || std::erase(level->second, job) == 0) return false;
    if (level->second.empty()) levels_.erase(level);
    --size_;
    return true;
  }

  /// Every job, in the order they would have run; the queue is left empty.
  std::vector<Job> take_all() {
    std::vector<Job> all;
    all.reserve(size_);
    for (auto& [priority, level] : levels_)
      for (Job& job : level) all.push_back(std::move(job));
    levels_.clear();
    size_ = 0;
    return all;
  }

  void clear() noexcept {
    levels_.clear();
    size_ = 0;
  }

  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }

 private:
  std::map<int, std::deque<Job>, std::greater<>> levels_;
  std::size_t size_ = 0;
};

}  // namespace crew::detail
