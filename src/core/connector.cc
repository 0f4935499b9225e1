#include "core/connector.h"

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
