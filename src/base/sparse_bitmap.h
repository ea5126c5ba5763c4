// A bitmap that knows which of its 64-bit words may hold a set bit, so that
// clearing it, walking it and merging it cost what was set since the last
// clear, not its size. DirtyTracker keeps one bit per 4 KiB page of each
// range: 64 GiB is 262,144 words, of which a pass that found a few
// thousand pages touches a few hundred.
//
// Invariant: a word whose summary bit is clear is zero. (A set summary bit
// promises nothing: the word may have been cleared bit by bit.)
//
// A value type over memory it does not free by itself, so that it can live
// in arrays the owner grows with realloc: allocate() then release().
// Not thread-safe.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace dunk {

class SparseBitmap {
 public:
  // `bits` clear bits; false (and nothing held) when out of memory.
  bool allocate(std::uint64_t bits) noexcept {
    release();
    const std::uint64_t words = words_for(bits);
    words_ = static_cast<std::uint64_t*>(std::calloc(words == 0 ? 1 : words, sizeof(std::uint64_t)));
    summary_ = static_cast<std::uint64_t*>(std::calloc(words_for(words) == 0 ? 1 : words_for(words), sizeof(std::uint64_t)));
    if (words_ == nullptr || summary_ == nullptr) {
      release();
      return false;
    }
    bits_ = bits;
    return true;
  }
  void release() noexcept {
    std::free(words_);
    std::free(summary_);
    words_ = summary_ = nullptr;
    bits_ = 0;
  }

  std::uint64_t size() const noexcept { return bits_; }

  bool test(std::uint64_t bit) const noexcept { return bit < bits_ && ((words_[bit / 64] >> (bit % 64)) & 1) != 0; }

  // Sets bits [first, last) (clipped to the size).
  void set(std::uint64_t first, std::uint64_t last) noexcept {
    if (last > bits_) last = bits_;
    while (first < last && first % 64 != 0) set_one(first++);
    while (first + 64 <= last) {
      words_[first / 64] = ~std::uint64_t{0};
      mark(first / 64);
      first += 64;
    }
    while (first < last) set_one(first++);
  }

  // Clears every bit, touching only the words that may be nonzero.
  void clear() noexcept {
    for_each_marked_word([&](std::uint64_t w) { words_[w] = 0; });
    std::memset(summary_, 0, summary_words() * sizeof(std::uint64_t));
  }

  // This |= other (the same size).
  void merge(const SparseBitmap& other) noexcept {
    other.for_each_marked_word([&](std::uint64_t w) {
      if (other.words_[w] == 0) return;
      words_[w] |= other.words_[w];
      mark(w);
    });
  }

  std::uint64_t count() const noexcept {
    std::uint64_t n = 0;
    for_each_marked_word([&](std::uint64_t w) { n += static_cast<unsigned>(__builtin_popcountll(words_[w])); });
    return n;
  }

  // Calls each(bit) for every set bit, in increasing order.
  template <class F>
  void for_each(F&& each) const noexcept {
    for_each_marked_word([&](std::uint64_t w) {
      for (std::uint64_t bits = words_[w]; bits != 0; bits &= bits - 1) {
        each(w * 64 + static_cast<unsigned>(__builtin_ctzll(bits)));
      }
    });
  }

 private:
  static constexpr std::uint64_t words_for(std::uint64_t bits) noexcept { return (bits + 63) / 64; }
  std::uint64_t summary_words() const noexcept { return words_for(words_for(bits_)); }
  void mark(std::uint64_t word) noexcept { summary_[word / 64] |= std::uint64_t{1} << (word % 64); }
  void set_one(std::uint64_t bit) noexcept {
    words_[bit / 64] |= std::uint64_t{1} << (bit % 64);
    mark(bit / 64);
  }
  template <class F>
  void for_each_marked_word(F&& each) const noexcept {
    for (std::uint64_t s = 0, n = summary_words(); s < n; ++s) {
      for (std::uint64_t marks = summary_[s]; marks != 0; marks &= marks - 1) {
        each(s * 64 + static_cast<unsigned>(__builtin_ctzll(marks)));
      }
    }
  }

  std::uint64_t* words_ = nullptr;
  std::uint64_t* summary_ = nullptr;  // bit w: words_[w] may be nonzero
  std::uint64_t bits_ = 0;
};

}  // namespace dunk
