#include "common/cpu_affinity.h"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace st {

std::vector<int> AllowedCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &set)) cpus.push_back(c);
  }
  return cpus;
}

std::string FormatCpuList(const std::vector<int>& cpus) {
  std::string out;
  for (size_t i = 0; i < cpus.size();) {
    size_t j = i;
    while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1) ++j;
    absl::StrAppend(&out, out.empty() ? "" : ",", cpus[i]);
    if (j > i) absl::StrAppend(&out, "-", cpus[j]);
    i = j + 1;
  }
  return out;
}

absl::StatusOr<std::vector<int>> ParseCpuList(const std::string& text) {
  const std::vector<int> allowed = AllowedCpus();
  std::vector<int> cpus;
  auto bad = [&](absl::string_view part, absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("CPU list '", text, "': '", part, "' ", why));
  };
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    part = absl::StripAsciiWhitespace(part);
    int lo = 0, hi = 0;
    const size_t dash = part.find('-');
    if (dash == absl::string_view::npos) {
      if (!absl::SimpleAtoi(part, &lo) || lo < 0) return bad(part, "is not a CPU number");
      hi = lo;
    } else if (!absl::SimpleAtoi(part.substr(0, dash), &lo) ||
               !absl::SimpleAtoi(part.substr(dash + 1), &hi) || lo < 0 || hi < lo) {
      return bad(part, "is not a range FIRST-LAST");
    }
    for (int c = lo; c <= hi; ++c) {
      if (!std::binary_search(allowed.begin(), allowed.end(), c)) {
        return bad(part, absl::StrCat("names CPU ", c, ", which this process may not use (it may use ",
                                      FormatCpuList(allowed), ")"));
      }
      if (std::find(cpus.begin(), cpus.end(), c) != cpus.end()) {
        return bad(part, absl::StrCat("lists CPU ", c, " twice"));
      }
      cpus.push_back(c);
    }
  }
  return cpus;
}

absl::Status PinCurrentThread(int cpu) {
  if (cpu < 0 || cpu >= CPU_SETSIZE) return absl::InvalidArgumentError(absl::StrCat("CPU ", cpu));
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (const int err = pthread_setaffinity_np(pthread_self(), sizeof(set), &set); err != 0) {
    return absl::InternalError(absl::StrCat("cannot pin a thread to CPU ", cpu, ": ",
                                            std::strerror(err)));
  }
  return absl::OkStatus();
}

}  // namespace st
