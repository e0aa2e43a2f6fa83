#include "coordinator/inference_service.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "coordinator/request_limits.h"
#include "model/tokenizer_utf8.h"

namespace st::serve {
namespace pb = smallthinker::v1;

grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

namespace {

// Proto options -> engine options (server defaults for unset fields).
absl::StatusOr<EngineRequest> ToEngineRequest(std::vector<int32_t> prompt,
                                             const pb::GenerateOptions& o) {
  EngineRequest r;
  r.prompt = std::move(prompt);
  GenerateOptions& g = r.options;
  if (o.max_tokens() < 0) return absl::InvalidArgumentError("max_tokens must be >= 0");
  g.max_tokens = o.max_tokens() > 0 ? o.max_tokens() : 256;
  SamplingParams& s = g.sampling;
  if (o.has_temperature()) s.temperature = o.temperature().value();
  if (o.has_top_p()) s.top_p = o.top_p().value();
  if (o.has_top_k()) s.top_k = o.top_k().value();
  if (o.has_min_p()) s.min_p = o.min_p().value();
  if (o.has_repeat_penalty()) s.repeat_penalty = o.repeat_penalty().value();
  if (o.has_presence_penalty()) s.presence_penalty = o.presence_penalty().value();
  if (o.has_frequency_penalty()) s.frequency_penalty = o.frequency_penalty().value();
  s.seed = o.seed();
  if (absl::Status st = ValidateSamplingParams(s); !st.ok()) return st;
  g.stop.assign(o.stop().begin(), o.stop().end());
  if (absl::Status st = ValidateStops(g.stop); !st.ok()) return st;
  g.ignore_eos = o.ignore_eos();
  if (o.context_size() < 0) return absl::InvalidArgumentError("context_size must be >= 0");
  r.context_size = o.context_size();
  return r;
}

pb::FinishReason ToProto(FinishReason f) {
  switch (f) {
    case FinishReason::kStop: return pb::FINISH_REASON_STOP;
    case FinishReason::kLength: return pb::FINISH_REASON_LENGTH;
    default: return pb::FINISH_REASON_UNSPECIFIED;
  }
}

}  // namespace

absl::StatusOr<Engine*> InferenceServiceImpl::Admit(grpc::ServerContext* context) const {
  if (!state_.api_key.empty()) {
    const auto& md = context->client_metadata();
    bool ok = false;
    for (const char* key : {"authorization", "x-api-key"}) {
      auto it = md.find(key);
      if (it == md.end()) continue;
      std::string value(it->second.data(), it->second.size());
      if (std::string_view(key) == "x-api-key") value = "Bearer " + value;
      ok = ok || Authorized(state_, value);
    }
    if (!ok) return absl::UnauthenticatedError("missing or wrong API key (metadata authorization: Bearer KEY)");
  }
  Engine* engine = state_.engine.load();
  if (engine == nullptr) return absl::UnavailableError("the model is still loading");
  return engine;
}

grpc::Status InferenceServiceImpl::Stream(grpc::ServerContext* context, Engine* engine,
                                          std::vector<int32_t> prompt,
                                          const pb::GenerateOptions& options,
                                          grpc::ServerWriter<pb::GenerateResponse>* writer) {
  auto request = ToEngineRequest(std::move(prompt), options);
  if (!request.ok()) return ToGrpc(request.status());
  if (context->deadline() != std::chrono::system_clock::time_point::max()) {
    request->deadline = absl::FromChrono(context->deadline());
  }
  auto stream = engine->Submit(std::move(*request));
  if (!stream.ok()) return ToGrpc(stream.status());
  EngineEvent e;
  while (true) {
    const RequestStream::Poll poll = (*stream)->Next(&e, absl::Milliseconds(20));
    if (poll == RequestStream::Poll::kEnded) return grpc::Status(grpc::StatusCode::INTERNAL, "stream ended early");
    if (poll == RequestStream::Poll::kTimeout) {
      if (context->IsCancelled()) (*stream)->Cancel();
      continue;
    }
    if (e.done && !e.status.ok()) return ToGrpc(e.status);
    pb::GenerateResponse r;
    r.set_text(e.text);
    r.mutable_token_ids()->Add(e.token_ids.begin(), e.token_ids.end());
    if (e.done) {
      r.set_finish_reason(ToProto(e.finish));
      pb::Usage* u = r.mutable_usage();
      u->set_prompt_tokens(e.usage.prompt_tokens);
      u->set_completion_tokens(e.usage.completion_tokens);
      u->set_time_to_first_token_seconds(e.usage.ttft_seconds);
      u->set_queue_seconds(e.usage.queue_seconds);
      u->set_prompt_seconds(e.usage.prompt_seconds);
      u->set_decode_seconds(e.usage.decode_seconds);
      u->set_decode_tokens_per_second(
          e.usage.completion_tokens > 1 && e.usage.decode_seconds > 0
              ? (e.usage.completion_tokens - 1) / e.usage.decode_seconds
              : 0.0);
      u->set_seed(e.usage.seed);
    }
    if (!writer->Write(r)) {
      (*stream)->Cancel();  // the client went away
      while ((*stream)->Next(&e) == RequestStream::Poll::kEvent) {
      }
      return grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
    }
    if (e.done) return grpc::Status::OK;
  }
}

grpc::Status InferenceServiceImpl::Generate(grpc::ServerContext* context,
                                            const pb::GenerateRequest* request,
                                            grpc::ServerWriter<pb::GenerateResponse>* writer) {
  auto engine = Admit(context);
  if (!engine.ok()) return ToGrpc(engine.status());
  const Tokenizer& tok = (*engine)->model().tokenizer();
  std::vector<int32_t> prompt;
  switch (request->prompt_case()) {
    case pb::GenerateRequest::kText: {
      auto ids = EncodePrompt(tok, request->text());
      if (!ids.ok()) return ToGrpc(ids.status());
      prompt = std::move(*ids);
      break;
    }
    case pb::GenerateRequest::kTokenIds: {
      const auto& ids = request->token_ids().ids();
      if (absl::Status s = ValidateIds({ids.data(), static_cast<size_t>(ids.size())},
                                       (*engine)->model().config().vocab_size);
          !s.ok()) {
        return ToGrpc(s);
      }
      prompt.assign(ids.begin(), ids.end());
      break;
    }
    default:
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no prompt (set text or token_ids)");
  }
  if (prompt.empty()) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "empty prompt");
  return Stream(context, *engine, std::move(prompt), request->options(), writer);
}

grpc::Status InferenceServiceImpl::Chat(grpc::ServerContext* context,
                                        const pb::ChatRequest* request,
                                        grpc::ServerWriter<pb::GenerateResponse>* writer) {
  auto engine = Admit(context);
  if (!engine.ok()) return ToGrpc(engine.status());
  std::vector<ChatMessage> messages;
  for (const auto& m : request->messages()) messages.push_back({m.role(), m.content()});
  auto ids = EncodeChat((*engine)->model().tokenizer(), messages);
  if (!ids.ok()) return ToGrpc(ids.status());
  return Stream(context, *engine, std::move(*ids), request->options(), writer);
}

grpc::Status InferenceServiceImpl::Tokenize(grpc::ServerContext* context,
                                            const pb::TokenizeRequest* request,
                                            pb::TokenizeResponse* response) {
  auto engine = Admit(context);
  if (!engine.ok()) return ToGrpc(engine.status());
  if (absl::Status s = ValidateText("text", request->text()); !s.ok()) return ToGrpc(s);
  auto ids = (*engine)->model().tokenizer().Encode(request->text(), request->parse_special());
  if (!ids.ok()) return ToGrpc(ids.status());
  response->mutable_ids()->Add(ids->begin(), ids->end());
  return grpc::Status::OK;
}

grpc::Status InferenceServiceImpl::Detokenize(grpc::ServerContext* context,
                                              const pb::DetokenizeRequest* request,
                                              pb::DetokenizeResponse* response) {
  auto engine = Admit(context);
  if (!engine.ok()) return ToGrpc(engine.status());
  const auto& ids = request->ids();
  absl::Span<const int32_t> span(ids.data(), ids.size());
  if (absl::Status s = ValidateIds(span, (*engine)->model().config().vocab_size); !s.ok()) {
    return ToGrpc(s);
  }
  std::string text;
  internal::AppendSanitizedUtf8((*engine)->model().tokenizer().Decode(span), &text);
  response->set_text(std::move(text));
  return grpc::Status::OK;
}

grpc::Status InferenceServiceImpl::GetModelInfo(grpc::ServerContext* context,
                                                const pb::GetModelInfoRequest*,
                                                pb::ModelInfo* info) {
  auto engine = Admit(context);
  if (!engine.ok()) return ToGrpc(engine.status());
  const ModelConfig& c = (*engine)->model().config();
  const EngineOptions& o = (*engine)->options();
  info->set_id(state_.model_id);
  info->set_path(state_.model_path);
  info->set_architecture("smallthinker");
  info->set_n_layers(c.n_layers);
  info->set_n_experts(c.n_experts);
  info->set_top_k(c.top_k);
  info->set_d_model(c.d_model);
  info->set_vocab_size(c.vocab_size);
  info->set_context_length(c.context_length);
  info->set_server_context_size(o.context_size);
  info->set_parallel(o.parallel);
  info->set_queue_capacity(o.queue);
  std::error_code ec;
  const auto size = std::filesystem::file_size(state_.model_path, ec);
  info->set_file_bytes(ec ? 0 : size);
  return grpc::Status::OK;
}

grpc::Status InferenceServiceImpl::GetStats(grpc::ServerContext* context,
                                            const pb::GetStatsRequest*, pb::Stats* out) {
  auto engine = Admit(context);
  if (!engine.ok()) return ToGrpc(engine.status());
  const EngineStats s = (*engine)->stats();
  out->set_requests_total(s.requests_total);
  out->set_requests_rejected(s.requests_rejected);
  out->set_requests_processing(s.requests_processing);
  out->set_requests_deferred(s.requests_deferred);
  out->set_prompt_tokens_total(s.prompt_tokens_total);
  out->set_tokens_predicted_total(s.tokens_predicted_total);
  out->set_prompt_seconds_total(s.prompt_seconds_total);
  out->set_decode_seconds_total(s.decode_seconds_total);
  out->set_steps_total(s.steps_total);
  out->set_recent_tokens_per_second(s.recent_tokens_per_second);
  out->set_kv_cache_bytes(s.kv_cache_bytes);
  out->set_kv_cache_budget_bytes(s.kv_cache_budget_bytes);
  out->set_uptime_seconds(s.uptime_seconds);
  if (s.cache.present) {
    pb::ExpertCacheStats* c = out->mutable_expert_cache();
    const ExpertCacheCounters& k = s.cache.counters;
    c->set_slots(s.cache.slots);
    c->set_resident(s.cache.resident);
    c->set_slot_bytes(s.cache.slot_bytes);
    c->set_requests(k.requests);
    c->set_hits(k.hits);
    c->set_misses(k.misses);
    c->set_hit_rate(s.cache.hit_rate());
    c->set_reads(k.reads);
    c->set_bytes_read(k.bytes_read);
    c->set_evictions(k.evictions);
    c->set_prefetch_skipped(k.prefetch_skipped);
    c->set_stall_seconds(k.stall_seconds);
    c->set_guesses_dropped(k.guesses_dropped);
  }
  if (s.workers.present) {
    pb::WorkerStats* w = out->mutable_workers();
    w->set_workers_up(s.workers.workers_up);
    w->set_steps(s.workers.steps);
    w->set_remote_requests(s.workers.remote_requests);
    w->set_remote_items(s.workers.remote_items);
    w->set_local_items(s.workers.local_items);
    w->set_failover_items(s.workers.failover_items);
    w->set_failovers(s.workers.failovers);
    w->set_timeouts(s.workers.timeouts);
    w->set_readmissions(s.workers.readmissions);
    w->set_bytes_sent(s.workers.bytes_sent);
    w->set_bytes_received(s.workers.bytes_received);
  }
  return grpc::Status::OK;
}

}  // namespace st::serve
