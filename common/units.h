// Human-readable byte sizes: parsing "1GiB" / "512M" and formatting.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace st {

// Parses "123", "64K", "1.5GB", "8GiB", "512 MiB". K/M/G/T without "i" and
// with or without "B" are powers of 1024 too (the convention of --memory-budget
// flags in llama.cpp and most tools); "kB"/"MB"... with a lowercase/explicit
// SI spelling are still treated as binary. Errors name the input.
absl::StatusOr<uint64_t> ParseByteSize(std::string_view text);

// "1.50 GiB", "23.4 MiB", "512 B".
std::string FormatBytes(uint64_t bytes);

}  // namespace st
