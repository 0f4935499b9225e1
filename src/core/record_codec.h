// A source record as bytes, for the source cache: every field of the
// contact and every raw attribute, so that a record decoded is equal to the
// one encoded (operator==). The bytes are versioned and length-prefixed;
// decoding checks every length, so bytes that are not an encoding (a
// corrupted or foreign value) are refused, never read past.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "core/connector.h"

namespace roster {

std::string EncodeRecord(const SourceRecord& record);

// nullopt when `bytes` is not an encoding this version of roster wrote.
std::optional<SourceRecord> DecodeRecord(std::string_view bytes);

}  // namespace roster
