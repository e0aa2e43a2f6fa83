// RemoteExpertExecutor, the messages half: a worker's share of a layer
// step as Compute requests, split to fit the message cap. The step itself is
// in remote_expert_executor.cc.
#include <algorithm>
#include <cmath>

#include "coordinator/remote_expert_executor.h"
#include "expert_worker/expert_service.h"

namespace st {

namespace v1 = smallthinker::v1;

void RemoteExpertExecutor::SplitIntoMessages(Worker& w, const Routes& routes) const {
  w.messages.clear();
  if (w.step_items.empty()) return;
  const int top_k = routes.top_k;
  const size_t d_bytes = static_cast<size_t>(config_.d_model) * sizeof(float);
  // A reply carries d_model floats per item, or per token when the worker
  // combines (every token of the message whole, weights finite: as
  // BuildRequest decides); a request d_model floats per token plus, per
  // item, a row, an expert and a weight (at most 14 bytes);
  // kReplyEnvelopeBytes cover the other fields (the worker checks replies
  // with the same bound).
  auto fits = [&](size_t items, size_t rows, bool combined) {
    const size_t reply = (combined ? rows : items) * d_bytes + kReplyEnvelopeBytes;
    const size_t request = rows * d_bytes + items * 14 + kReplyEnvelopeBytes;
    return std::max(reply, request) <= max_message_bytes_ &&
           rows <= static_cast<size_t>(kMaxComputeRows) &&
           items <= static_cast<size_t>(kMaxComputeItems);
  };
  const bool combines = w.client->description().combines_tokens();
  // Whole tokens per message (items increase, so a token's items are
  // adjacent), so a worker can still combine them.
  size_t begin = 0, rows = 0;
  bool combined = combines;  // the message so far would be combined
  for (size_t i = 0; i < w.step_items.size();) {
    size_t j = i + 1;
    while (j < w.step_items.size() && w.step_items[j] / top_k == w.step_items[i] / top_k) ++j;
    bool whole = j - i == static_cast<size_t>(top_k);
    for (size_t k = i; k < j && whole; ++k) whole = std::isfinite(routes.weights[w.step_items[k]]);
    if (i > begin && !fits(j - begin, rows + 1, combined && whole)) {
      w.messages.emplace_back(begin, i);
      begin = i;
      rows = 0;
      combined = combines;
    }
    ++rows;
    combined = combined && whole;
    i = j;
  }
  w.messages.emplace_back(begin, w.step_items.size());
}

v1::ComputeRequest RemoteExpertExecutor::BuildRequest(Worker& w, int layer, const Routes& routes,
                                                      const float* h) {
  const size_t d = config_.d_model;
  const int top_k = routes.top_k;
  v1::ComputeRequest req;
  req.set_step_id(++step_id_);
  req.set_layer(layer);
  std::string* hidden = req.mutable_hidden();
  hidden->reserve(w.items.size() * d * sizeof(float));
  w.row_token.clear();
  for (int i : w.items) {
    const int t = i / top_k;
    if (w.row_token.empty() || t != w.row_token.back()) {  // items increase, so tokens do too
      hidden->append(reinterpret_cast<const char*>(h + static_cast<size_t>(t) * d),
                     d * sizeof(float));
      w.row_token.push_back(t);
    }
    req.add_row(static_cast<int>(w.row_token.size()) - 1);
    req.add_expert(routes.ids[i]);
  }
  const int rows = static_cast<int>(w.row_token.size());
  req.set_n_rows(rows);
  // Every slot of every token here (the items are whole tokens in slot
  // order): the worker can combine them exactly as CombineSlots would, and
  // reply with one row per token.
  // (A non-finite weight, from a hidden state gone NaN, would be refused:
  // such a step keeps per-item replies and NaN propagates as it would
  // locally.)
  w.combine = w.client->description().combines_tokens() &&
              w.items.size() == static_cast<size_t>(rows) * top_k &&
              std::all_of(w.items.begin(), w.items.end(),
                          [&](int i) { return std::isfinite(routes.weights[i]); });
  if (w.combine) {
    for (int i : w.items) req.add_weight(routes.weights[i]);
  }
  return req;
}

}  // namespace st
