#include "model/stop_condition.h"

#include <algorithm>
#include <utility>

#include "glog/logging.h"

namespace st {

std::string_view FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kNone:
      return "";
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
  }
  return "";
}

StopChecker::StopChecker(std::vector<std::string> stop_strings, std::vector<int32_t> stop_token_ids,
                         int max_tokens)
    : stop_strings_(std::move(stop_strings)),
      stop_token_ids_(std::move(stop_token_ids)),
      max_tokens_(max_tokens) {}

StopStep StopChecker::Feed(int32_t token_id, std::string_view piece) {
  if (finish_ != FinishReason::kNone) {
    DLOG(WARNING) << "StopChecker::Feed after finish (" << FinishReasonName(finish_) << ")";
    StopStep again = last_finish_;
    again.text.clear();
    return again;
  }
  ++num_tokens_;
  StopStep step;

  if (std::find(stop_token_ids_.begin(), stop_token_ids_.end(), token_id) !=
      stop_token_ids_.end()) {
    step.finish = FinishReason::kStop;
    step.stop_token_id = token_id;
    step.text = std::exchange(held_, {});
  } else {
    held_.append(piece);
    // Earliest occurrence of any stop string; the first listed wins a tie.
    size_t match_pos = std::string::npos;
    for (size_t i = 0; i < stop_strings_.size(); ++i) {
      if (stop_strings_[i].empty()) continue;
      const size_t pos = held_.find(stop_strings_[i]);
      if (pos < match_pos) {
        match_pos = pos;
        step.stop_string_index = static_cast<int>(i);
      }
    }
    if (match_pos != std::string::npos) {
      step.finish = FinishReason::kStop;
      step.text = held_.substr(0, match_pos);
      held_.clear();
    } else if (max_tokens_ > 0 && num_tokens_ >= max_tokens_) {
      step.finish = FinishReason::kLength;
      step.text = std::exchange(held_, {});
    } else {
      const size_t emit = held_.size() - HoldLength();
      step.text = held_.substr(0, emit);
      held_.erase(0, emit);
    }
  }
  finish_ = step.finish;
  if (finish_ != FinishReason::kNone) last_finish_ = step;
  return step;
}

StopStep StopChecker::FeedHidden(int32_t token_id, std::string_view text) {
  const bool stop_token = std::find(stop_token_ids_.begin(), stop_token_ids_.end(), token_id) !=
                          stop_token_ids_.end();
  if (finish_ != FinishReason::kNone || stop_token) return Feed(token_id, {});
  ++num_tokens_;
  StopStep step;
  for (size_t i = 0; i < stop_strings_.size(); ++i) {
    if (!stop_strings_[i].empty() && text.find(stop_strings_[i]) != std::string_view::npos) {
      step.finish = FinishReason::kStop;
      step.stop_string_index = static_cast<int>(i);
      break;
    }
  }
  if (step.finish == FinishReason::kNone && max_tokens_ > 0 && num_tokens_ >= max_tokens_) {
    step.finish = FinishReason::kLength;
  }
  if (step.finish != FinishReason::kNone) step.text = std::exchange(held_, {});
  finish_ = step.finish;
  if (finish_ != FinishReason::kNone) last_finish_ = step;
  return step;
}

std::string StopChecker::Flush() { return std::exchange(held_, {}); }

size_t StopChecker::HoldLength() const {
  size_t longest = 0;
  for (const std::string& stop : stop_strings_) {
    // Candidate lengths: shorter than the stop string and than held_.
    const size_t max_len = std::min(stop.size() - (stop.empty() ? 0 : 1), held_.size());
    for (size_t len = max_len; len > longest; --len) {
      if (std::string_view(held_).substr(held_.size() - len) ==
          std::string_view(stop).substr(0, len)) {
        longest = len;
        break;
      }
    }
  }
  return longest;
}

}  // namespace st
