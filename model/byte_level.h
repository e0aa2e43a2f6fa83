// GPT-2 byte-level alphabet: every byte 0..255 is represented by one printable
// Unicode code point so that BPE never sees whitespace or control bytes.
// Bytes 33..126, 161..172 and 174..255 map to the same code point; the other
// 68 byte values map, in increasing byte order, to U+0100, U+0101, ... U+0143
// (so ' ' -> U+0120 'Ġ', '\n' -> U+010A 'Ċ').
//
// Pure functions over static tables; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace st {

// Code point that represents `byte`.
char32_t ByteToUnicode(uint8_t byte);

// Inverse of ByteToUnicode; nullopt for code points outside the alphabet.
std::optional<uint8_t> UnicodeToByte(char32_t cp);

// Maps raw bytes to their byte-level text (UTF-8 of the mapped code points).
// Output is 1-2 bytes per input byte.
std::string ByteLevelEncode(std::string_view bytes);

// Appends the raw bytes that byte-level `text` stands for to `out`. A
// character outside the alphabet (or ill-formed UTF-8 in `text`) is copied
// through unchanged and makes the function return false; well-formed
// byte-level text returns true.
bool ByteLevelDecode(std::string_view text, std::string* out);

}  // namespace st
