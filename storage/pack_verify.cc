#include "storage/pack_verify.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <deque>
#include <memory>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace st {

absl::StatusOr<VerifyResult> VerifyPack(std::shared_ptr<const ExpertPack> pack,
                                        const SourceOptions& options, int in_flight,
                                        uint64_t max_records, uint64_t first) {
  if (in_flight < 1 || in_flight > 4096) {
    return absl::InvalidArgumentError(absl::StrCat("in_flight must be in [1, 4096], got ", in_flight));
  }
  const PackHeader h = pack->header();
  ST_ASSIGN_OR_RETURN(std::unique_ptr<ExpertSource> src, OpenExpertSource(pack, options));
  std::unique_ptr<char, decltype(&std::free)> bufs(
      static_cast<char*>(std::aligned_alloc(kPackAlignment, h.record_size * in_flight)), &std::free);
  if (bufs == nullptr) return absl::ResourceExhaustedError("cannot allocate read buffers");
  VerifyResult result{.source = std::string(src->name())};
  const auto start = std::chrono::steady_clock::now();
  std::deque<std::pair<ReadId, int>> outstanding;  // id, buffer slot
  const uint64_t total =
      max_records > 0 ? std::min<uint64_t>(max_records, h.record_count) : h.record_count;
  const uint64_t stride = h.record_count / total;  // >= 1
  uint64_t next = 0;
  absl::Status first_error;
  auto submit = [&](int slot) -> absl::Status {
    const uint64_t record = (first + next * stride) % h.record_count;
    const ReadRequest r{.layer = static_cast<int>(record / h.n_experts),
                        .expert = static_cast<int>(record % h.n_experts),
                        .dst = bufs.get() + slot * h.record_size};
    ++next;
    ST_ASSIGN_OR_RETURN(std::vector<ReadId> ids, src->Submit({&r, 1}));
    outstanding.emplace_back(ids[0], slot);
    return absl::OkStatus();
  };
  for (int slot = 0; slot < in_flight && next < total; ++slot) {
    ST_RETURN_IF_ERROR(submit(slot));
  }
  while (!outstanding.empty()) {
    auto [id, slot] = outstanding.front();
    outstanding.pop_front();
    absl::Status s = src->Wait(id);
    if (!s.ok() && first_error.ok()) first_error = s;
    ++result.records;
    result.bytes += h.record_size;
    if (first_error.ok() && next < total) ST_RETURN_IF_ERROR(submit(slot));
  }
  ST_RETURN_IF_ERROR(first_error);
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace st
