// Personal data inside messages. A message that names a person or a target
// user marks the name with Personal(); whoever shows or keeps the message
// decides how it appears: by name (a plan or status on the console, or a
// sync with --debug) or by a pseudonym, a keyed-hash prefix that names the
// same person the same way in every run and tells nobody without the key
// who it is (a sync's output, which ends up in logs, and the stored run
// history).
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace roster {

// `ref` is what identifies them for good (a source key, an account name),
// `shown` what a console sees ("Jane Doe (3f2a1b2c…)"). The marks are
// control bytes no output keeps; they are taken out of both first.
std::string Personal(std::string_view ref, std::string_view shown);

// The message with every mark replaced by its `shown` text.
std::string ShowPersonal(std::string_view message);

// The message with every mark replaced by pseudonym(ref).
using PseudonymFn = std::function<std::string(std::string_view ref)>;
std::string HidePersonal(std::string_view message, const PseudonymFn& pseudonym);

// Marks every occurrence of `value` (and of its URL-encoded form, as in a
// collection's URL) in `message` as Personal(value, value): for names a
// message took from elsewhere, such as a server's error naming a mailbox.
std::string MarkPersonal(std::string_view message, std::string_view value);

}  // namespace roster
