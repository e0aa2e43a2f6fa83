#include "model/byte_level.h"

#include <array>

#include "model/tokenizer_utf8.h"

namespace st {
namespace {

struct Tables {
  std::array<char32_t, 256> byte_to_cp;
  std::array<int16_t, 324> cp_to_byte;        // -1 where not in the alphabet
  std::array<std::string, 256> byte_to_text;  // UTF-8 of byte_to_cp
};

const Tables& GetTables() {
  static const Tables* const tables = [] {
    auto* t = new Tables;
    t->cp_to_byte.fill(-1);
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool same = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
      const char32_t cp = same ? static_cast<char32_t>(b) : static_cast<char32_t>(next++);
      t->byte_to_cp[b] = cp;
      t->cp_to_byte[cp] = static_cast<int16_t>(b);
      internal::AppendUtf8(cp, &t->byte_to_text[b]);
    }
    return t;
  }();
  return *tables;
}

}  // namespace

char32_t ByteToUnicode(uint8_t byte) { return GetTables().byte_to_cp[byte]; }

std::optional<uint8_t> UnicodeToByte(char32_t cp) {
  const Tables& t = GetTables();
  if (cp >= t.cp_to_byte.size() || t.cp_to_byte[cp] < 0) return std::nullopt;
  return static_cast<uint8_t>(t.cp_to_byte[cp]);
}

std::string ByteLevelEncode(std::string_view bytes) {
  const Tables& t = GetTables();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) out += t.byte_to_text[static_cast<uint8_t>(c)];
  return out;
}

bool ByteLevelDecode(std::string_view text, std::string* out) {
  bool ok = true;
  size_t pos = 0;
  while (pos < text.size()) {
    const int n = internal::Utf8Classify(text, pos);
    if (n <= 0) {  // ill-formed: copy the bytes through
      const size_t len = n == 0 ? text.size() - pos : static_cast<size_t>(-n);
      out->append(text.data() + pos, len);
      pos += len;
      ok = false;
      continue;
    }
    const size_t start = pos;
    const std::optional<uint8_t> b = UnicodeToByte(internal::DecodeUtf8Char(text, &pos));
    if (b.has_value()) {
      out->push_back(static_cast<char>(*b));
    } else {
      out->append(text.data() + start, pos - start);
      ok = false;
    }
  }
  return ok;
}

}  // namespace st
