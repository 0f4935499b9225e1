#include "core/connector.h"

#include "core/erasure.h"
#include "core/hash.h"

namespace roster {

std::string Target::DefaultResourceName(const ManagedTag& tag) {
  std::string material = tag.rule;
  material.push_back('\0');
  material += tag.key;
  return "roster-" + HashHex(material);
}

std::vector<WriteOutcome> Collection::WriteBatch(const std::vector<WriteOp>& ops) {
  std::vector<WriteOutcome> out;
  out.reserve(ops.size());
  for (const WriteOp& op : ops) {
    WriteOutcome o;
    if (op.kind == WriteOp::Kind::kDelete) {
      o.status = Delete(op.href, op.if_match);
      o.result.href = op.href;
    } else {
      Result<WriteResult> w = op.kind == WriteOp::Kind::kCreate
                                  ? Create(op.name, op.tag, *op.body)
                                  : Update(op.href, op.if_match, op.tag, *op.body);
      if (w.ok()) {
        o.result = std::move(w).value();
      } else {
        o.status = w.take_error();
      }
    }
    out.push_back(std::move(o));
  }
  return out;
}

}  // namespace roster

namespace roster {

std::string ErasureKeyId(std::string_view source, std::string_view key) {
  std::string id = "key";
  id.push_back('\0');
  id += source;
  id.push_back('\0');
  id += key;
  return id;
}

std::string ErasureDnId(std::string_view dn) {
  std::string id = "dn";
  id.push_back('\0');
  return id + NormalizeReference(dn);
}

std::string ErasureNameId(std::string_view name) {
  std::string id = "name";
  id.push_back('\0');
  std::string_view t = name;
  while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
  while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
  for (char c : t) id.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c);
  return id;
}

std::vector<std::string> ErasureIds(std::string_view source, const SourceRecord& record) {
  std::vector<std::string> ids = {ErasureKeyId(source, record.key)};
  auto dn = record.attributes.find("dn");
  if (dn != record.attributes.end() && !dn->second.empty() && !dn->second.front().empty()) {
    ids.push_back(ErasureDnId(dn->second.front()));
  }
  const std::string name = record.contact.DisplayName();
  if (!name.empty()) ids.push_back(ErasureNameId(name));
  return ids;
}

std::string NormalizeReference(std::string_view dn) {
  std::string out;
  out.reserve(dn.size());
  for (size_t i = 0; i < dn.size(); ++i) {
    char c = dn[i];
    if (c == ' ') {
      // A space next to a separator (or at either end) is not part of a value.
      size_t j = i;
      while (j < dn.size() && dn[j] == ' ') ++j;
      bool before_sep = j == dn.size() || dn[j] == ',' || dn[j] == '=' || dn[j] == '+';
      bool after_sep = out.empty() || out.back() == ',' || out.back() == '=' || out.back() == '+';
      if (!before_sep && !after_sep) out.append(j - i, ' ');
      i = j - 1;
      continue;
    }
    out.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c);
  }
  return out;
}

}  // namespace roster
