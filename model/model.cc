#include "model/model.h"

#include "kernels/ggml_storage.h"
#include "kernels/packed_kquant.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/local_expert_executor.h"
#include "model/mapped_repack.h"
#include "model/tokenizer_data.h"

namespace st {

absl::StatusOr<std::unique_ptr<Model>> Model::Load(const std::string& path,
                                                   const ModelOptions& options) {
  std::unique_ptr<Model> m(new Model());
  m->options_ = options;
  m->path_ = path;
  if (options.kv_type != DType::kF16 && options.kv_type != DType::kBF16 &&
      options.kv_type != DType::kF32) {
    return absl::InvalidArgumentError(absl::StrCat("KV cache type must be f16, bf16 or f32, got ",
                                                   std::string(DTypeName(options.kv_type))));
  }
  ST_ASSIGN_OR_RETURN(m->file_, GgufFile::Open(path));
  ST_ASSIGN_OR_RETURN(m->config_, LoadModelConfig(*m->file_));
  ST_ASSIGN_OR_RETURN(m->weights_,
                      DenseWeights::Load(*m->file_, m->config_,
                                         options.native_kquant &&
                                             options.dense_kquant_as_stored.value_or(
                                                 PackedKQuantKernelsHere())));
  if (options.repack) ST_RETURN_IF_ERROR(m->weights_.PackForKernels(*m->file_));
  if (options.huge_pages) ST_RETURN_IF_ERROR(m->weights_.MoveToHugePages());
  SetExpertRepack(options.repack);
  SetNativeKQuant(options.native_kquant);
  ST_ASSIGN_OR_RETURN(TokenizerData tok_data, TokenizerDataFromGguf(*m->file_));
  if (static_cast<int>(tok_data.tokens.size()) > m->config_.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": tokenizer has ", tok_data.tokens.size(),
                                                   " tokens but the embedding only ",
                                                   m->config_.vocab_size, " rows"));
  }
  ST_ASSIGN_OR_RETURN(m->tokenizer_, Tokenizer::Create(std::move(tok_data)));
  m->pool_ = std::make_unique<ThreadPool>(options.threads, options.cpus);
  ST_ASSIGN_OR_RETURN(std::vector<ExpertStacks> stacks, LoadExpertStacks(*m->file_, m->config_));
  m->experts_ =
      std::make_unique<LocalExpertExecutor>(m->config_, std::move(stacks), m->pool_.get());
  m->forward_ = std::make_unique<Forward>(m->config_, m->weights_, m->experts_.get(),
                                          m->pool_.get(), options.max_batch);
  return m;
}

void Model::WrapExperts(
    const std::function<std::unique_ptr<ExpertExecutor>(std::unique_ptr<ExpertExecutor>)>& wrap) {
  experts_ = wrap(std::move(experts_));
  forward_->set_experts(experts_.get());
}

}  // namespace st
