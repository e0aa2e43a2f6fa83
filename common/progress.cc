#include "common/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "common/units.h"

namespace st {

ProgressBar::ProgressBar(std::string label, uint64_t total_bytes, bool enabled)
    : label_(std::move(label)),
      total_(std::max<uint64_t>(total_bytes, 1)),
      enabled_(enabled),
      tty_(isatty(STDERR_FILENO) != 0),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

ProgressBar::~ProgressBar() {
  if (!finished_ && enabled_ && tty_ && done_ > 0) std::fprintf(stderr, "\n");
}

void ProgressBar::Add(uint64_t bytes) {
  done_ = std::min(total_, done_ + bytes);
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  const int decile = static_cast<int>(done_ * 10 / total_);
  if (tty_ ? now - last_draw_ >= std::chrono::milliseconds(100) : decile != last_decile_) {
    last_draw_ = now;
    last_decile_ = decile;
    Draw(false);
  }
}

void ProgressBar::Finish() {
  if (finished_) return;
  finished_ = true;
  done_ = total_;
  if (enabled_) Draw(true);
}

void ProgressBar::Draw(bool final) {
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double frac = static_cast<double>(done_) / total_;
  const double rate = secs > 0 ? done_ / secs : 0;
  const double eta = rate > 0 ? (total_ - done_) / rate : 0;
  char bar[31];
  const int filled = static_cast<int>(frac * 30);
  for (int i = 0; i < 30; ++i) bar[i] = i < filled ? '#' : '.';
  bar[30] = 0;
  std::fprintf(stderr, "%s%s [%s] %3d%%  %s / %s  %s/s  %s %.0fs%s", tty_ ? "\r" : "",
               label_.c_str(), bar, static_cast<int>(frac * 100), FormatBytes(done_).c_str(),
               FormatBytes(total_).c_str(), FormatBytes(static_cast<uint64_t>(rate)).c_str(),
               final ? "took" : "ETA", final ? secs : eta, (final || !tty_) ? "\n" : "");
  std::fflush(stderr);
}

}  // namespace st
