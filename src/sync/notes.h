// What a run has to say besides its counts: warnings (something was repaired
// or left out) and notices (what the sources gave), one sentence each, from
// any thread.
#pragma once

#include <mutex>
#include <string>
#include <vector>

namespace roster {

class RunNotes {
 public:
  void Warn(std::string sentence) {
    std::lock_guard lock(mu_);
    warnings_.push_back(std::move(sentence));
  }
  void Notice(std::string sentence) {
    std::lock_guard lock(mu_);
    notices_.push_back(std::move(sentence));
  }
  std::vector<std::string> TakeWarnings() {
    std::lock_guard lock(mu_);
    return std::move(warnings_);
  }
  std::vector<std::string> TakeNotices() {
    std::lock_guard lock(mu_);
    return std::move(notices_);
  }

 private:
  std::mutex mu_;
  std::vector<std::string> warnings_, notices_;
};

}  // namespace roster
