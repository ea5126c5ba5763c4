// A std::thread pool that scripts/compat runs natively and under `dunk exec`
// and whose output it compares: worker threads on a mutex + condition
// variable task queue, futures (values and exceptions), atomics, and pools
// created and destroyed in rounds (threads created and joined repeatedly).
// Usage: thread_pool [WORKERS [TASKS [ROUNDS]]]; the output depends only on
// TASKS and ROUNDS, never on WORKERS or scheduling.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <future>
#include <mutex>
#include <queue>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

class ThreadPool {
 public:
  explicit ThreadPool(unsigned workers) {
    for (unsigned i = 0; i < workers; i++) threads_.emplace_back([this] { work(); });
  }
  ~ThreadPool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (auto& t : threads_) t.join();
  }
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  template <typename F>
  auto submit(F f) -> std::future<decltype(f())> {
    auto task = std::make_shared<std::packaged_task<decltype(f())()>>(std::move(f));
    auto result = task->get_future();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.emplace([task] { (*task)(); });
    }
    wake_.notify_one();
    return result;
  }

 private:
  void work() {
    for (;;) {
      std::function<void()> task;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;
        task = std::move(queue_.front());
        queue_.pop();
      }
      task();
    }
  }

  std::vector<std::thread> threads_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::queue<std::function<void()>> queue_;
  bool stopping_ = false;
};

// Deterministic busy work: the number of primes in [from, to).
unsigned primes_in(unsigned from, unsigned to) {
  unsigned n = 0;
  for (unsigned i = from < 2 ? 2 : from; i < to; i++) {
    bool prime = true;
    for (unsigned d = 2; d * d <= i; d++)
      if (i % d == 0) {
        prime = false;
        break;
      }
    n += prime;
  }
  return n;
}

}  // namespace

int main(int argc, char** argv) {
  unsigned workers = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 4;
  unsigned tasks = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 2000;
  unsigned rounds = argc > 3 ? std::strtoul(argv[3], nullptr, 10) : 8;
  if (workers == 0) workers = 1;

  std::uint64_t total = 0;
  for (unsigned round = 0; round < rounds; round++) {
    // Vary the pool size per round so threads are created and joined often.
    ThreadPool pool(1 + (workers + round) % (workers + 1));
    std::atomic<unsigned> ran{0};
    std::vector<std::future<unsigned>> results;
    results.reserve(tasks);
    for (unsigned t = 0; t < tasks; t++) {
      unsigned from = (round * tasks + t) * 50;
      results.push_back(pool.submit([from, &ran] {
        ran.fetch_add(1, std::memory_order_relaxed);
        return primes_in(from, from + 50);
      }));
    }
    auto failing = pool.submit([]() -> unsigned { throw std::runtime_error("task failed on purpose"); });
    std::uint64_t sum = 0;
    for (auto& r : results) sum += r.get();
    std::string caught = "none";
    try {
      failing.get();
    } catch (const std::exception& e) {
      caught = e.what();
    }
    total += sum;
    std::printf("round %u: %u tasks ran, %llu primes, exception: %s\n", round, ran.load(),
                static_cast<unsigned long long>(sum), caught.c_str());
  }
  std::printf("total primes: %llu\n", static_cast<unsigned long long>(total));
  return 0;
}
