// Keyed and unkeyed hashing (BLAKE2b through libsodium) and small encodings.
#pragma once

#include <string>
#include <string_view>

namespace roster {

// Hex of BLAKE2b with an output of `bytes` bytes (16..64).
std::string HashHex(std::string_view data, size_t bytes = 16);

std::string HexEncode(std::string_view bytes);
std::string Base64Encode(std::string_view bytes);
// Returns false on malformed input (whitespace is skipped).
bool Base64Decode(std::string_view text, std::string* out);

}  // namespace roster
