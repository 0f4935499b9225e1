// One finding of `roster doctor`: what was checked, how it went, in one
// sentence an administrator can act on.
#pragma once

#include <string>

namespace roster {

struct Finding {
  enum class Level { kOk, kWarning, kFailed };
  Level level = Level::kOk;
  std::string subject;  // "tenant contoso", "target m365: alice@contoso.com"
  std::string text;     // one sentence; never a secret or a token
};

}  // namespace roster
