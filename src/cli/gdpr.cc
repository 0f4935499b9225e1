// `roster gdpr export|erase|unerase` and `roster decommission`.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <set>

#include "app/reach.h"
#include "app/state_open.h"
#include "app/wiring.h"
#include "cli/common.h"
#include "core/erasure.h"
#include "core/record_codec.h"
#include "crypto/seal.h"
#include "formats/vcard.h"
#include "kinds/kind.h"

namespace roster::cli {
namespace {

// A cached record's addresses, normalised.
std::vector<std::string> AddressesOf(const SourceRecord& r) {
  std::vector<std::string> out;
  for (const TypedValue& e : r.contact.emails) {
    std::string a = gdpr::NormalizeAddress(e.value);
    if (!a.empty()) out.push_back(std::move(a));
  }
  return out;
}

bool About(const SourceRecord& r, const std::string& subject) {
  for (const std::string& a : AddressesOf(r)) {
    if (a == subject) return true;
  }
  return false;
}

// The cached records about `subject`, with the source each came from.
struct CachedPerson {
  std::string source;
  SourceRecord record;
  int64_t read_at = 0;
};

Result<std::vector<CachedPerson>> FindCached(const Config& config, StateStore& store,
                                             const std::string& subject) {
  ROSTER_ASSIGN_OR_RETURN(std::vector<CachedEntry> all,
                          store.LoadAllCached(std::chrono::hours(24) * config.retention_days));
  std::vector<CachedPerson> out;
  for (CachedEntry& e : all) {
    std::optional<SourceRecord> r = DecodeRecord(e.record.record);
    if (!r) {
      return MakeError(ErrorKind::kInvalidData,
                       "a cached record of source " + e.source + " could not be decoded");
    }
    if (About(*r, subject)) out.push_back(CachedPerson{e.source, std::move(*r), e.read_at});
  }
  return out;
}

json ContactJson(const Contact& c) {
  json out = json::object();
  auto put = [&](const char* name, const std::string& v) {
    if (!v.empty()) out[name] = Safe(v);
  };
  put("formatted_name", c.formatted_name);
  put("family_name", c.family_name);
  put("given_name", c.given_name);
  put("additional_names", c.additional_names);
  put("honorific_prefix", c.honorific_prefix);
  put("honorific_suffix", c.honorific_suffix);
  put("nickname", c.nickname);
  put("organization", c.organization);
  put("department", c.department);
  put("title", c.title);
  put("role", c.role);
  put("manager", c.manager);
  auto typed = [&](const char* name, const std::vector<TypedValue>& values) {
    if (values.empty()) return;
    json list = json::array();
    for (const TypedValue& v : values)
      list.push_back({{"value", Safe(v.value)}, {"types", SafeList(v.types)}});
    out[name] = std::move(list);
  };
  typed("emails", c.emails);
  typed("phones", c.phones);
  typed("urls", c.urls);
  if (!c.addresses.empty()) {
    json list = json::array();
    for (const PostalAddress& a : c.addresses) {
      list.push_back({{"types", SafeList(a.types)},
                      {"po_box", Safe(a.po_box)},
                      {"extended", Safe(a.extended)},
                      {"street", Safe(a.street)},
                      {"locality", Safe(a.locality)},
                      {"region", Safe(a.region)},
                      {"postal_code", Safe(a.postal_code)},
                      {"country", Safe(a.country)}});
    }
    out["addresses"] = std::move(list);
  }
  put("note", c.note);
  put("birthday", c.birthday);
  if (!c.categories.empty()) out["categories"] = SafeList(c.categories);
  if (c.photo) {
    out["photo"] = {{"media_type", Safe(c.photo->media_type)},
                    {"bytes", static_cast<int64_t>(c.photo->data.size())}};
  }
  return out;
}

// The audit log's entries about `pseudonyms`: any detail equal to one.
Result<json> AuditAbout(const Config& config, const std::set<std::string>& pseudonyms) {
  json out = json::array();
  std::ifstream in(config.audit_path, std::ios::binary);
  if (!in) return out;  // no log yet
  std::string line;
  while (std::getline(in, line)) {
    json v = json::parse(line, nullptr, false);
    if (!v.is_object() || !v.contains("data") || !v["data"].is_object()) continue;
    bool about = false;
    for (const auto& [name, value] : v["data"].items()) {
      if (value.is_string() && pseudonyms.count(value.get<std::string>())) about = true;
    }
    if (!about) continue;
    out.push_back({{"seq", v.value("seq", json())},
                   {"time", v.value("time", json())},
                   {"event", v.value("event", json())},
                   {"data", v["data"]}});
  }
  return out;
}

// Removes the state file and what SQLite keeps beside it, after wiping what
// it held (purge --all rebuilds the file, so no page of it lingers).
roster::Status WipeState(const Config& config) {
  {
    std::vector<std::string> notes;
    ROSTER_ASSIGN_OR_RETURN(auto store, OpenState(config, StateUse::kSync, &notes));
    ROSTER_RETURN_IF_ERROR(store->PurgeAll());
  }
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
    const std::string path = config.state_path + suffix;
    if (unlink(path.c_str()) != 0 && errno != ENOENT) {
      return MakeError(ErrorKind::kInvalidArgument,
                       "cannot remove " + path + ": " + std::strerror(errno));
    }
  }
  return {};
}

// What gdpr export and unerase work on: the state, its audit log and the
// erasure register checked against it. `nothing` ends the message of an
// audit log that cannot be opened ("nothing was changed").
struct GdprState {
  std::unique_ptr<StateStore> store;
  std::unique_ptr<Audit> audit;
  std::optional<gdpr::ErasureRegister> reg;
};

Result<GdprState> OpenForGdpr(const Config& config, const std::string& nothing) {
  GdprState out;
  std::vector<std::string> notes;
  auto store = OpenState(config, StateUse::kSync, &notes);
  for (const std::string& note : notes) std::cerr << "roster: " << Safe(note) << "\n";
  if (!store.ok()) return store.take_error();
  out.store = std::move(store).value();
  ROSTER_ASSIGN_OR_RETURN(crypto::Key key, StateKey(config, StateUse::kSync, nullptr));
  auto audit = OpenAudit(config, std::move(key));
  if (!audit.ok()) {
    Error e = audit.take_error();
    e.message += "; " + nothing;
    return e;
  }
  out.audit = std::move(audit).value();
  ROSTER_ASSIGN_OR_RETURN(gdpr::ErasureRegister reg,
                          LoadErasures(config, *out.audit->key, *out.store));
  out.reg = std::move(reg);
  return out;
}

}  // namespace

// `gdpr erase`, before its sync: the erasure recorded, the person into the
// register (with every key, directory name and display name the cache
// knows for them), and out of the cache. Answers how many cached entries
// were about them.
Result<int64_t> EraseSubject(const Config& config, const std::string& address, StateStore& store,
                             gdpr::ErasureRegister& reg, Audit& audit) {
  const std::string subject = gdpr::NormalizeAddress(address);
  ROSTER_ASSIGN_OR_RETURN(std::vector<CachedPerson> cached, FindCached(config, store, subject));
  std::vector<std::string> ids;
  std::map<std::string, std::vector<std::string>> by_source;
  for (const CachedPerson& p : cached) {
    for (std::string& id : ErasureIds(p.source, p.record)) ids.push_back(std::move(id));
    by_source[p.source].push_back(p.record.key);
  }
  const bool again = reg.Contains(subject);
  // Recorded first: an erasure is never done without its entry.
  ROSTER_RETURN_IF_ERROR(
      audit.Append("gdpr-erase", {{"subject", store.Pseudonym(subject)},
                                  {"again", int64_t{again ? 1 : 0}},
                                  {"cached", static_cast<int64_t>(cached.size())}}));
  reg.Add(subject, ids, std::chrono::system_clock::now());
  ROSTER_RETURN_IF_ERROR(reg.Save());
  ROSTER_RETURN_IF_ERROR(RememberErasures(store, reg));
  for (const auto& [source, keys] : by_source) {
    auto forgotten = store.ForgetCached(source, keys);
    if (!forgotten.ok()) return forgotten.take_error();
  }
  return static_cast<int64_t>(cached.size());
}

int GdprUnerase(const Config& config, const std::string& address, bool as_json) {
  if (!SubjectOk(address)) return 2;
  if (!LockState(config.state_path)) return 2;
  auto opened = OpenForGdpr(config, "nothing was changed");
  if (!opened.ok()) return Fail(opened.error());
  GdprState& g = *opened;
  auto& store = g.store;
  auto& audit = g.audit;
  auto& reg = g.reg;
  const std::string subject = gdpr::NormalizeAddress(address);
  if (!reg->exists()) {
    std::cerr << "roster: nobody was erased: there is no erasure register "
              << Safe(config.erasure_register) << "\n";
    return 1;
  }
  if (!reg->Remove(subject)) {
    std::cerr << "roster: " << Safe(address) << " is not in the erasure register "
              << Safe(config.erasure_register) << "; nothing was changed\n";
    return 1;
  }
  roster::Status st = audit->Append("gdpr-unerase", {{"subject", store->Pseudonym(subject)}});
  if (st.ok()) st = reg->Save();
  if (st.ok()) st = RememberErasures(*store, *reg);
  if (!st.ok()) return Fail(st.error());
  // The cache was scrubbed of them (their reports' records too): the next
  // sync reads the sources in full, so that what named them comes back.
  auto purged = store->PurgeCache();
  if (!purged.ok()) return Fail(purged.error());
  st = CloseAudit(*audit, config, store.get());
  if (!st.ok()) {
    std::cerr << "roster: the person was unerased, but the audit log could not be closed: "
              << Safe(st.error().message) << "\n";
    return 1;
  }
  if (as_json) {
    std::cout << Dump(json{{"mode", "gdpr unerase"},
                           {"subject", Safe(address)},
                           {"register", Safe(config.erasure_register)},
                           {"exit_code", 0}})
              << "\n";
  } else {
    std::cout << Safe(address) << " is no longer in the erasure register; the next sync reads "
              << "the sources in full and brings them back where the rules select them.\n";
  }
  return 0;
}

int GdprExport(const Config& config, const std::string& address, const std::string& vcard_path,
               bool as_json) {
  (void)as_json;  // the export is JSON either way: it is meant to be handed over
  if (!SubjectOk(address)) return 2;
  const std::string subject = gdpr::NormalizeAddress(address);
  if (!LockState(config.state_path)) return 2;
  auto engine_config = BuildEngineConfig(config);
  if (!engine_config.ok()) return Fail(engine_config.error());
  auto opened = OpenForGdpr(config, "nothing was exported");
  if (!opened.ok()) return Fail(opened.error());
  GdprState& g = *opened;
  auto& store = g.store;
  auto& audit = g.audit;
  auto& reg = g.reg;
  auto cached = FindCached(config, *store, subject);
  if (!cached.ok()) return Fail(cached.error());

  json cached_json = json::object(), cached_from = json::array();
  for (const CachedPerson& p : *cached) {
    json fields = ContactJson(p.record.contact);
    for (auto& [name, value] : fields.items()) {
      if (!cached_json.contains(name)) cached_json[name] = value;
    }
    json attributes = json::object();
    for (const auto& [name, values] : p.record.attributes)
      attributes[Safe(name)] = SafeList(values);
    cached_from.push_back({{"source", Safe(p.source)},
                           {"key", Safe(p.record.key)},
                           {"read_at", p.read_at},
                           {"fields", std::move(fields)},
                           {"attributes", std::move(attributes)}});
  }

  // The copies, read back from every target: none is guessed from the state.
  std::vector<std::string> place_notes;
  auto places = FindPlaces(*engine_config, store.get(), place_notes);
  if (!places.ok()) return Fail(places.error());
  json copies = json::array(), unreadable = json::array();
  std::optional<Contact> copy_body;
  std::set<std::string> pseudonyms = {store->Pseudonym(subject)};
  for (const Place& place : *places) {
    PlaceContents contents = ReadPlace(*engine_config, place);
    if (!contents.error.empty()) {
      unreadable.push_back({{"rule", Safe(place.rule)},
                            {"target", Safe(place.target)},
                            {"user", Safe(place.user)},
                            {"error", Safe(contents.error)}});
      continue;
    }
    if (gdpr::NormalizeAddress(place.user) == subject) {
      pseudonyms.insert(store->Pseudonym(place.user));
    }
    for (const FoundItem& item : contents.managed) {
      std::vector<std::string> keys = KindOf(item.body).MatchKeys(item.body);
      if (std::find(keys.begin(), keys.end(), subject) == keys.end()) continue;
      copies.push_back({{"rule", Safe(place.rule)},
                        {"target", Safe(place.target)},
                        {"user", Safe(place.user)},
                        {"collection", Safe(contents.collection)},
                        {"href", Safe(item.href)}});
      if (!copy_body) copy_body = std::get<Contact>(item.body);
    }
  }
  auto entries = AuditAbout(config, pseudonyms);
  if (!entries.ok()) return Fail(entries.error());
  if (!vcard_path.empty()) {
    std::optional<Contact> person =
        !cached->empty() ? std::optional<Contact>(cached->front().record.contact) : copy_body;
    if (!person) {
      std::cerr << "roster: roster holds nothing about " << Safe(address)
                << " to write as a vCard; " << Safe(vcard_path) << " was not written\n";
    } else {
      const std::string card = WriteVCard(*person, VCardVersion::k40, "");
      int fd =
          open(vcard_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
      bool written = fd >= 0 && fchmod(fd, 0600) == 0;  // an existing file keeps its mode
      for (size_t done = 0; written && done < card.size();) {
        ssize_t n = write(fd, card.data() + done, card.size() - done);
        if (n < 0 && errno == EINTR) continue;
        written = n > 0;
        if (written) done += static_cast<size_t>(n);
      }
      const int saved = errno;
      if (fd >= 0 && close(fd) != 0) written = false;
      if (!written) {
        std::cerr << "roster: cannot write " << Safe(vcard_path) << ": " << std::strerror(saved)
                  << "\n";
        return 2;
      }
    }
  }
  roster::Status st =
      audit->Append("gdpr-export", {{"subject", store->Pseudonym(subject)},
                                    {"cached", static_cast<int64_t>(cached->size())},
                                    {"copies", static_cast<int64_t>(copies.size())}});
  if (st.ok()) st = CloseAudit(*audit, config, store.get());
  json out{{"subject", Safe(address)},         {"erased", reg->Contains(subject)},
           {"cached", std::move(cached_json)}, {"cached_from", std::move(cached_from)},
           {"copies", std::move(copies)},      {"audit", std::move(*entries)}};
  if (!unreadable.empty()) out["unreadable"] = std::move(unreadable);
  if (!place_notes.empty()) out["warnings"] = SafeList(place_notes);
  out["exit_code"] = out.contains("unreadable") || !st.ok() ? 1 : 0;
  std::cout << Dump(out) << "\n";
  if (!st.ok()) {
    std::cerr << "roster: the export was not recorded in the audit log: "
              << Safe(st.error().message) << "\n";
    return 1;
  }
  if (cached->empty() && out["copies"].empty() && out["audit"].empty()) {
    std::cerr << "roster: roster holds nothing about " << Safe(address)
              << ": nothing cached, no copy in any address book, no audit entry\n";
  }
  if (out.contains("unreadable")) {
    std::cerr << "roster: some address books could not be read (\"unreadable\"): the copies "
                 "listed may be incomplete\n";
    return 1;
  }
  return 0;
}

int Decommission(const Config& config, bool dry_run, bool as_json) {
  if (!LockState(config.state_path)) return 2;
  auto engine_config = BuildEngineConfig(config);
  if (!engine_config.ok()) return Fail(engine_config.error());
  auto kind = InspectStateFile(config.state_path);
  if (!kind.ok()) return Fail(kind.error());
  std::unique_ptr<StateStore> store;
  if (*kind != StateFileKind::kMissing) {
    std::vector<std::string> notes;
    auto opened = OpenState(config, dry_run ? StateUse::kReading : StateUse::kSync, &notes);
    for (const std::string& note : notes) std::cerr << "roster: " << Safe(note) << "\n";
    if (!opened.ok()) return Fail(opened.error());
    store = std::move(opened).value();
  }
  std::unique_ptr<Audit> audit;
  if (!dry_run) {
    auto a = OpenAudit(config);
    if (!a.ok()) {
      std::cerr << "roster: " << Safe(a.error().message) << "; nothing was removed\n";
      return 2;
    }
    audit = std::move(a).value();
    roster::Status st = audit->Append("decommission-start", {{"config", ConfigHash(config)}});
    if (!st.ok()) return Fail(st.error());
  }
  std::vector<std::string> warnings;
  auto places = FindPlaces(*engine_config, store.get(), warnings);
  if (!places.ok()) return Fail(places.error());
  json items = json::array(), collections = json::array(), errors = json::array();
  int64_t removed_items = 0, removed_collections = 0;
  for (const Place& place : *places) {
    std::unique_ptr<Collection> collection;
    PlaceContents contents = ReadPlace(*engine_config, place, &collection);
    auto where = [&](json j) {
      j["rule"] = Safe(place.rule);
      j["target"] = Safe(place.target);
      j["user"] = Safe(place.user);
      return j;
    };
    if (!contents.error.empty()) {
      errors.push_back(where({{"error", Safe(contents.error)}}));
      continue;
    }
    if (!contents.found) continue;
    bool all_gone = true;
    int64_t deleted_here = 0;
    for (const FoundItem& item : contents.managed) {
      json j = where({{"href", Safe(item.href)}, {"key", Safe(item.tag.key)}});
      if (!dry_run) {
        roster::Status st = collection->Delete(item.href, item.etag);
        if (!st.ok()) {
          all_gone = false;
          errors.push_back(where({{"href", Safe(item.href)}, {"error", Safe(st.error().message)}}));
          continue;
        }
        ++removed_items;
        ++deleted_here;
      }
      items.push_back(std::move(j));
    }
    if (audit && deleted_here > 0) {
      roster::Status st =
          audit->Append("decommission", {{"rule", place.rule},
                                         {"target", place.target},
                                         {"user", crypto::Pseudonym(*audit->key, place.user)},
                                         {"deleted", deleted_here}});
      if (!st.ok()) errors.push_back(where({{"error", Safe(st.error().message)}}));
    }
    if (contents.owned && contents.others == 0 && all_gone) {
      if (!dry_run) {
        // Listed again just before: a card a user added meanwhile keeps the book.
        auto again = collection->List("");
        if (!again.ok() || !again->changed.empty()) {
          warnings.push_back("the address book " + contents.collection + " of " + place.user +
                             (again.ok() ? " is no longer empty; it is left in place"
                                         : " could not be listed again: " + again.error().message +
                                               "; it is left in place"));
          continue;
        }
        roster::Status st = collection->RemoveCollection();
        if (!st.ok()) {
          errors.push_back(where(
              {{"collection", Safe(contents.collection)}, {"error", Safe(st.error().message)}}));
          continue;
        }
        ++removed_collections;
      }
      collections.push_back(where({{"collection", Safe(contents.collection)}}));
    } else if (!contents.owned && !contents.managed.empty()) {
      warnings.push_back("the address book " + contents.collection + " of " + place.user +
                         " was not created by roster (or is the user's own); it is emptied of "
                         "roster's items and left in place");
    } else if (contents.owned && contents.others > 0) {
      warnings.push_back("the address book " + contents.collection + " of " + place.user +
                         " holds " + std::to_string(contents.others) +
                         " items roster did not write; it is left in place");
    }
  }
  const bool complete = errors.empty();
  // No state left behind: wiped now, or there was none (a lost state).
  bool wiped = !dry_run && complete && *kind == StateFileKind::kMissing;
  if (!dry_run && complete && *kind != StateFileKind::kMissing) {
    store.reset();
    roster::Status st = WipeState(config);
    if (!st.ok()) {
      errors.push_back({{"error", Safe(st.error().message)}});
    } else {
      wiped = true;
    }
  }
  if (audit) {
    roster::Status st =
        audit->Append("decommission-end", {{"items", removed_items},
                                           {"collections", removed_collections},
                                           {"state_wiped", int64_t{wiped ? 1 : 0}},
                                           {"errors", static_cast<int64_t>(errors.size())}});
    if (st.ok()) st = CloseAudit(*audit, config);
    if (!st.ok()) errors.push_back({{"error", Safe(st.error().message)}});
  }
  const int code = errors.empty() ? 0 : 1;
  if (as_json) {
    std::cout << Dump(json{{"mode", dry_run ? "decommission --dry-run" : "decommission"},
                           {"items", std::move(items)},
                           {"collections", std::move(collections)},
                           {"errors", std::move(errors)},
                           {"warnings", SafeList(warnings)},
                           {"state_wiped", wiped},
                           {"exit_code", code}})
              << "\n";
    return code;
  }
  std::cout << (dry_run ? "Decommission (dry run: nothing was removed)\n" : "Decommission\n");
  for (const json& i : items) {
    std::cout << "  " << (dry_run ? "would delete " : "deleted ") << i["href"].get<std::string>()
              << " (" << i["rule"].get<std::string>() << " -> " << i["target"].get<std::string>()
              << "/" << i["user"].get<std::string>() << ")\n";
  }
  for (const json& c : collections) {
    std::cout << "  " << (dry_run ? "would remove address book " : "removed address book ")
              << c["collection"].get<std::string>() << "\n";
  }
  for (const std::string& w : warnings) std::cout << "  warning: " << Safe(w) << "\n";
  for (const json& e : errors) std::cout << "  error: " << e["error"].get<std::string>() << "\n";
  std::cout << "Total: " << items.size() << " items, " << collections.size() << " address books"
            << (dry_run ? " to remove" : " removed");
  if (!dry_run) {
    std::cout << (!wiped                             ? "; the state was kept"
                  : *kind == StateFileKind::kMissing ? "; there was no state to wipe"
                                                     : "; the state and its cache were wiped");
  }
  std::cout << ". The audit log, the erasure register and the key file stay: delete the key "
               "file last to make any leftover copy of the state unreadable.\n";
  return code;
}

}  // namespace roster::cli
