// A one-line terminal progress bar on stderr with rate and ETA.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace st {

// Prints "label [#####.....]  42%  1.2 GiB / 2.4 GiB  350 MiB/s  ETA 4s",
// redrawn at most every 100 ms (and only when stderr is a terminal, unless
// forced; otherwise one line per 10%). Thread-compatible.
class ProgressBar {
 public:
  ProgressBar(std::string label, uint64_t total_bytes, bool enabled = true);
  ~ProgressBar();  // ends the line if unfinished (no "100%": the work may have failed)

  void Add(uint64_t bytes);
  void Finish();

 private:
  void Draw(bool final);

  std::string label_;
  uint64_t total_;
  uint64_t done_ = 0;
  bool enabled_;
  bool tty_;
  bool finished_ = false;
  int last_decile_ = -1;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace st
