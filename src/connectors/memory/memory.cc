#include "connectors/memory/memory.h"

namespace roster {

std::map<std::string, MemoryItem> MemoryServer::Items(const std::string& user) {
  std::lock_guard lock(mu_);
  auto it = books_.find(user);
  return it == books_.end() ? std::map<std::string, MemoryItem>{} : it->second.items;
}

std::string MemoryServer::PutByHand(const std::string& user, const std::string& href,
                                    const Contact& contact, std::optional<ManagedTag> tag) {
  std::lock_guard lock(mu_);
  Book& book = books_[user];
  std::string etag = "\"" + std::to_string(next_etag_++) + "\"";
  book.items[href] = MemoryItem{etag, std::move(tag), contact};
  book.Touch(href);
  return etag;
}

void MemoryServer::RemoveByHand(const std::string& user, const std::string& href) {
  std::lock_guard lock(mu_);
  Book& book = books_[user];
  book.items.erase(href);
  book.Touch(href);
}

bool MemoryServer::HasCollection(const std::string& user) {
  std::lock_guard lock(mu_);
  return books_.count(user) > 0;
}

std::string MemoryServer::SyncToken(const std::string& user) {
  std::lock_guard lock(mu_);
  auto it = books_.find(user);
  return it == books_.end() ? "" : "v" + std::to_string(it->second.version);
}

MemoryCounters MemoryServer::counters() {
  std::lock_guard lock(mu_);
  return counters_;
}

void MemoryServer::ResetCounters() {
  std::lock_guard lock(mu_);
  counters_ = {};
}

void MemoryServer::SetMissingUsers(std::set<std::string> users) {
  std::lock_guard lock(mu_);
  missing_users_ = std::move(users);
}

bool MemoryServer::IsMissingUser(const std::string& user) {
  std::lock_guard lock(mu_);
  return missing_users_.count(user) > 0;
}

void MemoryServer::SetFault(
    std::function<std::optional<Error>(const std::string&, const std::string&)> fault) {
  std::lock_guard lock(mu_);
  fault_ = std::move(fault);
}

class MemoryCollection final : public Collection {
 public:
  MemoryCollection(std::shared_ptr<MemoryServer> server, std::string user)
      : server_(std::move(server)), user_(std::move(user)) {}

  std::string id() const override { return "memory:" + user_; }
  Status RemoveCollection() override {
    std::lock_guard lock(server_->mu_);
    server_->books_.erase(user_);
    return {};
  }
  std::string HrefOf(const std::string& name) const override { return "/" + user_ + "/" + name; }

  Result<Listing> List(const std::string& sync_token) override {
    std::lock_guard lock(server_->mu_);
    ++server_->counters_.lists;
    MemoryServer::Book& book = server_->books_[user_];
    Listing listing;
    listing.sync_token = "v" + std::to_string(book.version);
    int64_t since = 0;
    if (sync_token.size() > 1 && sync_token[0] == 'v') since = std::atoll(sync_token.c_str() + 1);
    if (since <= 0 || since > book.version) {
      listing.full = true;
      for (const auto& [href, item] : book.items) listing.changed.push_back({href, item.etag});
      return listing;
    }
    for (auto v = book.by_version.upper_bound(since); v != book.by_version.end(); ++v) {
      const std::string& href = v->second;
      auto it = book.items.find(href);
      if (it == book.items.end()) {
        listing.removed.push_back(href);
      } else {
        listing.changed.push_back({href, it->second.etag});
      }
    }
    return listing;
  }

  Result<std::vector<RemoteItem>> Fetch(const std::vector<std::string>& hrefs) override {
    std::lock_guard lock(server_->mu_);
    MemoryServer::Book& book = server_->books_[user_];
    std::vector<RemoteItem> out;
    for (const std::string& href : hrefs) {
      auto it = book.items.find(href);
      if (it == book.items.end()) continue;
      ++server_->counters_.fetched;
      RemoteItem r;
      r.href = href;
      r.etag = it->second.etag;
      r.tag = it->second.tag;
      r.body = it->second.contact;
      r.content_hash = ContentHash(it->second.contact);
      out.push_back(std::move(r));
    }
    return out;
  }

  Result<WriteResult> Create(const std::string& name, const ManagedTag& tag,
                             const ItemBody& body) override {
    const Contact* contact = std::get_if<Contact>(&body);
    if (!contact) return NotAContact();
    std::string href = HrefOf(name);
    std::lock_guard lock(server_->mu_);
    if (auto e = Fault("create", href)) return *e;
    MemoryServer::Book& book = server_->books_[user_];
    if (book.items.count(href)) {
      return MakeError(ErrorKind::kPreconditionFailed, "PUT " + href + ": HTTP 412");
    }
    ++server_->counters_.creates;
    return Store(book, href, tag, *contact);
  }

  Result<WriteResult> Update(const std::string& href, const std::string& if_match,
                             const ManagedTag& tag, const ItemBody& body) override {
    const Contact* contact = std::get_if<Contact>(&body);
    if (!contact) return NotAContact();
    std::lock_guard lock(server_->mu_);
    if (auto e = Fault("update", href)) return *e;
    MemoryServer::Book& book = server_->books_[user_];
    auto it = book.items.find(href);
    if (it == book.items.end() || it->second.etag != if_match) {
      return MakeError(ErrorKind::kPreconditionFailed, "PUT " + href + ": HTTP 412");
    }
    ++server_->counters_.updates;
    return Store(book, href, tag, *contact);
  }

  Status Delete(const std::string& href, const std::string& if_match) override {
    std::lock_guard lock(server_->mu_);
    if (auto e = Fault("delete", href)) return *e;
    MemoryServer::Book& book = server_->books_[user_];
    auto it = book.items.find(href);
    if (it == book.items.end()) return {};
    if (it->second.etag != if_match) {
      return MakeError(ErrorKind::kPreconditionFailed, "DELETE " + href + ": HTTP 412");
    }
    ++server_->counters_.deletes;
    book.items.erase(it);
    book.Touch(href);
    return {};
  }

 private:
  static Error NotAContact() {
    return Error{ErrorKind::kInvalidArgument, "an in-memory address book holds contacts only"};
  }

  std::optional<Error> Fault(const std::string& op, const std::string& href) {
    return server_->fault_ ? server_->fault_(op, href) : std::nullopt;
  }

  WriteResult Store(MemoryServer::Book& book, const std::string& href, const ManagedTag& tag,
                    const Contact& contact) {
    std::string etag = "\"" + std::to_string(server_->next_etag_++) + "\"";
    book.items[href] = MemoryItem{etag, tag, contact};
    book.Touch(href);
    return WriteResult{href, etag};
  }

  std::shared_ptr<MemoryServer> server_;
  std::string user_;
};

namespace {

class MemoryTarget final : public Target {
 public:
  MemoryTarget(std::shared_ptr<MemoryServer> server, int max_in_flight)
      : server_(std::move(server)), max_in_flight_(max_in_flight) {}

  Result<std::unique_ptr<Collection>> Open(const CollectionSpec& spec, bool create) override {
    if (server_->IsMissingUser(spec.user)) {
      Error e = MakeError(ErrorKind::kNotFound, "user " + spec.user + " has no account here");
      e.no_such_user = true;
      return e;
    }
    if (!create && !server_->HasCollection(spec.user)) {
      return MakeError(ErrorKind::kNotFound, "no collection for " + spec.user);
    }
    return std::unique_ptr<Collection>(std::make_unique<MemoryCollection>(server_, spec.user));
  }
  int max_in_flight() const override { return max_in_flight_; }

 private:
  std::shared_ptr<MemoryServer> server_;
  int max_in_flight_;
};

}  // namespace

std::unique_ptr<Target> NewMemoryTarget(std::shared_ptr<MemoryServer> server, int max_in_flight) {
  return std::make_unique<MemoryTarget>(std::move(server), max_in_flight);
}

}  // namespace roster
