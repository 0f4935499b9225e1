#include "connectors/memory/graph_like.h"

#include <algorithm>
#include <array>
#include <mutex>
#include <span>
#include <variant>

#include "connectors/graph/projection.h"
#include "core/hash.h"
#include "core/text.h"

namespace roster {
namespace {

constexpr size_t kMaxBatch = 20;      // requests in one $batch
constexpr size_t kPageSize = 100;     // contacts per page of a listing
constexpr size_t kBatchParallel = 4;  // sub-requests of one $batch Graph runs at once
constexpr size_t kMaxEmails = 3;      // emailAddresses Exchange keeps
constexpr size_t kMaxSlotPhones = 2;  // businessPhones, homePhones Exchange keeps

// --- the contact as Graph holds it ------------------------------------------------

// A contact as Graph properties: each a list of strings (one for a scalar,
// the five parts for an address). An unset property is absent, so two
// contacts differ exactly in the properties whose lists differ, and a PATCH
// clears a property by sending it empty.
using Props = std::map<std::string, std::vector<std::string>>;

struct ScalarProp {
  const char* name;
  std::string Contact::*field;
};

constexpr std::array<ScalarProp, 12> kScalarProps = {{
    {"displayName", &Contact::formatted_name},
    {"givenName", &Contact::given_name},
    {"surname", &Contact::family_name},
    {"middleName", &Contact::additional_names},
    {"title", &Contact::honorific_prefix},
    {"generation", &Contact::honorific_suffix},
    {"nickName", &Contact::nickname},
    {"companyName", &Contact::organization},
    {"department", &Contact::department},
    {"jobTitle", &Contact::title},
    {"manager", &Contact::manager},
    {"personalNotes", &Contact::note},
}};

// Graph's three addresses and the type each reads back with.
struct AddressProp {
  const char* name;
  const char* type;
};
constexpr std::array<AddressProp, 3> kAddressProps = {
    {{"businessAddress", "work"}, {"homeAddress", "home"}, {"otherAddress", "other"}}};

bool HasType(const std::vector<std::string>& types, std::string_view want) {
  bool preferred = false;
  for (const std::string& t : text::NormalizeTypes(types, false, &preferred)) {
    if (t == want) return true;
  }
  return false;
}

bool IsPreferred(const TypedValue& tv, bool is_email) {
  bool preferred = tv.preferred;
  text::NormalizeTypes(tv.types, is_email, &preferred);
  return preferred;
}

// The values that are not blank, preferred ones first, otherwise in order:
// which three e-mail addresses (or which phone of a slot) Graph keeps.
std::vector<const TypedValue*> PreferredFirst(const std::vector<TypedValue>& values,
                                              bool is_email) {
  std::vector<const TypedValue*> out;
  for (const TypedValue& tv : values) {
    if (!text::Trim(tv.value).empty()) out.push_back(&tv);
  }
  std::stable_partition(out.begin(), out.end(),
                        [&](const TypedValue* tv) { return IsPreferred(*tv, is_email); });
  return out;
}

// Every phone by the Graph property it could go to; fax, pager and other
// numbers have none.
struct PhoneSlots {
  std::vector<std::string> mobile, business, home;
};

PhoneSlots SlotPhones(const std::vector<TypedValue>& phones) {
  PhoneSlots slots;
  for (const TypedValue* tv : PreferredFirst(phones, false)) {
    const std::string_view field = PhoneFieldName(*tv);
    if (field == "mobile") slots.mobile.push_back(tv->value);
    if (field == "work_phone") slots.business.push_back(tv->value);
    if (field == "home_phone") slots.home.push_back(tv->value);
  }
  return slots;
}

// Business: the first address typed work, else the first typed neither home
// nor other (as the work address is read elsewhere); home: the first typed
// home; other: the first typed other, else the first left not typed home.
// What Graph gives back is chosen the same way again.
std::array<const PostalAddress*, 3> ChooseAddresses(const std::vector<PostalAddress>& addresses) {
  std::array<const PostalAddress*, 3> chosen{};
  auto pick = [&](auto&& fits) -> const PostalAddress* {
    for (const PostalAddress& a : addresses) {
      if (&a != chosen[0] && &a != chosen[1] && &a != chosen[2] && fits(a)) return &a;
    }
    return nullptr;
  };
  chosen[0] = pick([](const PostalAddress& a) { return HasType(a.types, "work"); });
  if (!chosen[0]) {
    chosen[0] = pick([](const PostalAddress& a) {
      return !HasType(a.types, "home") && !HasType(a.types, "other");
    });
  }
  chosen[1] = pick([](const PostalAddress& a) { return HasType(a.types, "home"); });
  chosen[2] = pick([](const PostalAddress& a) { return HasType(a.types, "other"); });
  if (!chosen[2])
    chosen[2] = pick([](const PostalAddress& a) { return !HasType(a.types, "home"); });
  return chosen;
}

bool AllDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Graph keeps a birthday as a date and time: a date is kept as YYYY-MM-DD, a
// date without a year as --MM-DD (Outlook's year 1604), other text is lost.
std::string GraphBirthday(std::string_view b) {
  b = text::Trim(b);
  if (b.size() >= 10 && AllDigits(b.substr(0, 4)) && b[4] == '-' && AllDigits(b.substr(5, 2)) &&
      b[7] == '-' && AllDigits(b.substr(8, 2)) && (b.size() == 10 || b[10] == 'T')) {
    return std::string(b.substr(0, 10));
  }
  if (b.size() == 8 && AllDigits(b)) {
    return std::string(b.substr(0, 4)) + "-" + std::string(b.substr(4, 2)) + "-" +
           std::string(b.substr(6, 2));
  }
  if (b.starts_with("--") && b.size() == 7 && AllDigits(b.substr(2, 2)) && b[4] == '-' &&
      AllDigits(b.substr(5, 2))) {
    return std::string(b);
  }
  if (b.starts_with("--") && b.size() == 6 && AllDigits(b.substr(2))) {
    return "--" + std::string(b.substr(2, 2)) + "-" + std::string(b.substr(4, 2));
  }
  return {};
}

void PutValue(Props& p, const std::string& name, std::string_view value) {
  if (!value.empty()) p[name] = {std::string(value)};
}

void PutValues(Props& p, const std::string& name, std::vector<std::string> values, size_t most) {
  if (values.size() > most) values.resize(most);
  if (!values.empty()) p[name] = std::move(values);
}

void PutAddresses(Props& p, const std::vector<PostalAddress>& addresses) {
  const std::array<const PostalAddress*, 3> chosen = ChooseAddresses(addresses);
  for (size_t i = 0; i < kAddressProps.size(); ++i) {
    const PostalAddress* a = chosen[i];
    if (!a) continue;
    std::vector<std::string> parts = {a->street, a->locality, a->region, a->postal_code,
                                      a->country};
    if (std::any_of(parts.begin(), parts.end(), [](const auto& s) { return !s.empty(); })) {
      p[kAddressProps[i].name] = std::move(parts);
    }
  }
  if (chosen[0]) PutValue(p, "officeLocation", chosen[0]->extended);
}

// What a Graph connector sends for the contact (its photo apart): what does
// not fit Graph's shape is dropped, not refused.
Props ToGraph(const Contact& c) {
  Props p;
  for (const ScalarProp& s : kScalarProps) PutValue(p, s.name, c.*s.field);
  PutValue(p, "birthday", GraphBirthday(c.birthday));
  std::vector<std::string> categories;
  for (const std::string& cat : c.categories) {
    if (!text::Trim(cat).empty()) categories.push_back(cat);
  }
  PutValues(p, "categories", std::move(categories), SIZE_MAX);
  std::vector<std::string> emails;
  for (const TypedValue* tv : PreferredFirst(c.emails, true)) emails.push_back(tv->value);
  PutValues(p, "emailAddresses", std::move(emails), kMaxEmails);
  PhoneSlots phones = SlotPhones(c.phones);
  PutValues(p, "mobilePhone", std::move(phones.mobile), 1);
  PutValues(p, "businessPhones", std::move(phones.business), kMaxSlotPhones);
  PutValues(p, "homePhones", std::move(phones.home), kMaxSlotPhones);
  PutAddresses(p, c.addresses);
  const std::vector<const TypedValue*> urls = PreferredFirst(c.urls, false);
  if (!urls.empty()) PutValue(p, "businessHomePage", urls.front()->value);
  return p;
}

const std::vector<std::string>& Values(const Props& p, const std::string& name) {
  static const std::vector<std::string> kNone;
  auto it = p.find(name);
  return it == p.end() ? kNone : it->second;
}

std::string Value(const Props& p, const std::string& name) {
  const std::vector<std::string>& v = Values(p, name);
  return v.empty() ? std::string() : v.front();
}

void ReadAddresses(const Props& p, Contact& c) {
  for (const AddressProp& prop : kAddressProps) {
    const std::vector<std::string>& v = Values(p, prop.name);
    if (v.size() != 5) continue;
    PostalAddress a;
    a.types = {prop.type};
    a.street = v[0];
    a.locality = v[1];
    a.region = v[2];
    a.postal_code = v[3];
    a.country = v[4];
    c.addresses.push_back(std::move(a));
  }
  const std::string office = Value(p, "officeLocation");
  if (office.empty()) return;
  auto business = std::find_if(c.addresses.begin(), c.addresses.end(),
                               [](const PostalAddress& a) { return a.types[0] == "work"; });
  if (business == c.addresses.end()) {
    business = c.addresses.insert(c.addresses.begin(), PostalAddress{{"work"}});
  }
  business->extended = office;
}

// The contact a Graph connector reads back from the properties.
Contact FromGraph(const Props& p) {
  Contact c;
  for (const ScalarProp& s : kScalarProps) c.*s.field = Value(p, s.name);
  c.birthday = Value(p, "birthday");
  c.categories = Values(p, "categories");
  for (const std::string& e : Values(p, "emailAddresses")) c.emails.push_back({e, {}, false});
  for (const std::string& v : Values(p, "mobilePhone")) c.phones.push_back({v, {"cell"}, false});
  for (const std::string& v : Values(p, "businessPhones")) {
    c.phones.push_back({v, {"work", "voice"}, false});
  }
  for (const std::string& v : Values(p, "homePhones")) {
    c.phones.push_back({v, {"home", "voice"}, false});
  }
  ReadAddresses(p, c);
  for (const std::string& v : Values(p, "businessHomePage")) c.urls.push_back({v, {"work"}, false});
  return c;
}

std::string Join(const std::string& a, const std::string& b, std::string_view sep) {
  if (a.empty() || b.empty()) return a + b;
  return a + std::string(sep) + b;
}

// What Outlook fills when the client did not: "Given Surname", "Surname, Given".
std::string DerivedDisplayName(const Props& p) {
  return Join(Value(p, "givenName"), Value(p, "surname"), " ");
}
std::string DerivedFileAs(const Props& p) {
  return Join(Value(p, "surname"), Value(p, "givenName"), ", ");
}

// A photo is sent as bytes; one given only by URI cannot be.
std::optional<Photo> GraphPhoto(const std::optional<Photo>& photo) {
  if (!photo || photo->data.empty()) return std::nullopt;
  return Photo{photo->media_type, photo->data, ""};
}

// A body Graph refuses (400): more than it keeps of e-mails or slot phones,
// which only an item that was not projected can have.
std::optional<Error> CheckShape(const Contact& c) {
  const size_t emails = PreferredFirst(c.emails, true).size();
  const PhoneSlots phones = SlotPhones(c.phones);
  if (emails <= kMaxEmails && phones.business.size() <= kMaxSlotPhones &&
      phones.home.size() <= kMaxSlotPhones) {
    return std::nullopt;
  }
  return MakeError(ErrorKind::kInvalidArgument,
                   "HTTP 400: a Graph contact holds at most 3 e-mail addresses and 2 business "
                   "and 2 home phones (the item was not projected)");
}

// The PATCH that turns `from` into `to`: what differs, with clears.
Props Diff(const Props& from, const Props& to) {
  Props patch;
  for (const auto& [name, values] : to) {
    auto it = from.find(name);
    if (it == from.end() || it->second != values) patch[name] = values;
  }
  for (const auto& [name, values] : from) {
    if (!to.count(name)) patch[name] = {};
  }
  return patch;
}

// --- the server's records -----------------------------------------------------------

struct StoredItem {
  std::string etag;
  std::optional<ManagedTag> tag;
  Props props;  // the server-filled displayName included
  bool explicit_display_name = false;
  std::string file_as;
  std::optional<Photo> photo;
};

// Applies a POST or PATCH body (an empty list clears), then fills what the
// server fills: displayName unless the client set one, fileAs always.
void ApplyProps(StoredItem& item, const Props& changes) {
  for (const auto& [name, values] : changes) {
    if (values.empty()) {
      item.props.erase(name);
    } else {
      item.props[name] = values;
    }
    if (name == "displayName") item.explicit_display_name = !values.empty();
  }
  if (!item.explicit_display_name) {
    item.props.erase("displayName");
    PutValue(item.props, "displayName", DerivedDisplayName(item.props));
  }
  item.file_as = DerivedFileAs(item.props);
}

Contact ViewOf(const StoredItem& item) {
  Contact c = FromGraph(item.props);
  c.photo = item.photo;
  return c;
}

RemoteItem RemoteOf(const std::string& href, const StoredItem& item) {
  RemoteItem r;
  r.href = href;
  r.etag = item.etag;
  r.tag = item.tag;
  Contact c = ViewOf(item);
  r.content_hash = ContentHash(c);
  r.body = std::move(c);
  return r;
}

struct Folder {
  std::string id, name;
  std::map<std::string, StoredItem> items;  // by href (= contact id)
  int64_t version = 1;
  std::map<std::string, int64_t> changed_at;  // href -> version of its last change, deletes too
};

StoredItem* FindItem(Folder* f, const std::string& href) {
  if (!f) return nullptr;
  auto it = f->items.find(href);
  return it == f->items.end() ? nullptr : &it->second;
}

struct Mailbox {
  std::map<std::string, Folder> folders;  // by id
  int in_flight = 0;
  std::optional<std::chrono::steady_clock::time_point> window_start;
  int64_t window_count = 0;
};

// One HTTP call as the server meets it: a plain request, or a $batch whose
// steps are sub-requests.
struct Call {
  std::string user;
  const GraphLikeOptions* options = nullptr;
  bool batch = false;
  int slots = 0;
  // The current op's answer was lost after a step ran; photo_lost: the
  // photo step's, so that the contact step's answer (the new id) arrived.
  std::optional<Error> lost;
  bool photo_lost = false;
};

uint64_t SplitMix(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

const Contact* BodyContact(const ItemBody* body) {
  return body ? std::get_if<Contact>(body) : nullptr;
}

Error NotAContact() {
  return MakeError(ErrorKind::kInvalidArgument, "a Graph contact folder holds contacts only");
}

Error FolderGone(const std::string& fid) {
  return MakeError(ErrorKind::kNotFound, "HTTP 404: the contact folder " + fid + " is gone");
}

WriteOutcome Failed(WriteOutcome out, Error error) {
  out.status = std::move(error);
  return out;
}

// What an update sends: the PATCH (only what differs from the item as read,
// with clears), the marker when it changes, then the photo when it differs.
struct UpdatePlan {
  Props patch;
  bool tag_changes = false;
  std::optional<Photo> photo;
  bool removes_photo = false;  // the body has none, the server one: Graph cannot remove it
  bool contact_step() const { return !patch.empty() || tag_changes; }
};

UpdatePlan PlanUpdate(const Contact& body, const WriteOp& op, const StoredItem* item) {
  UpdatePlan plan;
  const Contact* current = BodyContact(op.current);
  const Props base = current ? ToGraph(*current) : item ? item->props : Props{};
  plan.patch = Diff(base, ToGraph(body));
  plan.tag_changes = !item || item->tag != op.tag;
  const std::optional<Photo> photo = GraphPhoto(body.photo);
  if (photo && (!item || item->photo != photo)) plan.photo = photo;
  plan.removes_photo = !photo && item && item->photo;
  return plan;
}

}  // namespace

// --- the server ------------------------------------------------------------------------

struct GraphLikeServer::State {
  std::mutex mu;
  uint64_t id_rng;
  uint64_t fault_rng = 0;
  RandomFaults random;
  std::map<std::string, Mailbox> mailboxes;
  GraphLikeCounters counters;
  std::function<std::optional<StepFault>(const GraphLikeStep&)> fault;
  std::function<void(const std::string&, const std::string&)> in_flight_hook;

  explicit State(uint64_t seed) : id_rng(seed * 0x2545F4914F6CDD1DULL + 1) {}

  std::string RandomBytes(size_t n) {
    std::string out;
    while (out.size() < n) {
      const uint64_t x = SplitMix(id_rng);
      for (int i = 0; i < 8 && out.size() < n; ++i) out.push_back(static_cast<char>(x >> (8 * i)));
    }
    return out;
  }
  // Opaque like an Exchange id: URL-safe base64 of 35 bytes after "AAMk".
  std::string MintId() {
    std::string id = "AAMk" + Base64Encode(RandomBytes(35));
    std::replace(id.begin(), id.end(), '+', '-');
    std::replace(id.begin(), id.end(), '/', '_');
    return id;
  }
  std::string MintEtag() { return "W/\"EQAAAB" + Base64Encode(RandomBytes(18)) + "\""; }

  Folder* FindFolder(const std::string& user, const std::string& fid) {
    auto mb = mailboxes.find(user);
    if (mb == mailboxes.end()) return nullptr;
    auto it = mb->second.folders.find(fid);
    return it == mb->second.folders.end() ? nullptr : &it->second;
  }
  // Display names compare without regard to case, as Exchange's do.
  Folder* FindFolderByName(const std::string& user, const std::string& name) {
    for (auto& [id, folder] : mailboxes[user].folders) {
      if (text::EqualsNoCase(folder.name, name)) return &folder;
    }
    return nullptr;
  }
  Folder& MakeFolder(const std::string& user, const std::string& name) {
    const std::string id = MintId();
    Folder& f = mailboxes[user].folders[id];
    f.id = id;
    f.name = name;
    return f;
  }
  void Touch(Folder& f, const std::string& href, StoredItem& item) {
    item.etag = MintEtag();
    f.changed_at[href] = ++f.version;
  }

  std::optional<Error> DrawFault();
  std::optional<Error> ChargeWindow(Call& call);
  std::optional<Error> Admit(Call& call, const GraphLikeStep& step);
  std::optional<Error> TakeSlots(Call& call, size_t slots, size_t requests);
  void GiveSlots(Call& call);

  WriteOutcome RunOp(Call& call, const std::string& fid, const WriteOp& op);
  WriteOutcome Create(Call& call, const std::string& fid, const WriteOp& op);
  WriteOutcome Update(Call& call, const std::string& fid, const WriteOp& op);
  WriteOutcome Delete(Call& call, const std::string& fid, const WriteOp& op);
  void StorePhoto(Folder& f, const std::string& href, StoredItem& item, const Photo& photo,
                  WriteOutcome* out);
  void PutPhoto(Call& call, Folder& f, const std::string& href, const std::optional<Photo>& photo,
                const std::string& key, WriteOutcome* out);
  void MarkLost(const WriteOp& op, Error error, bool keep_href, WriteOutcome* out);
  void LoseAnswers(const std::vector<WriteOp>& ops, int64_t writes_before,
                   std::vector<WriteOutcome>* outcomes);

  Status FetchItems(Call& call, const std::string& fid, std::span<const std::string> hrefs,
                    std::vector<RemoteItem>* out);
  std::optional<Error> AdmitPage(Call& call);
  Result<Listing> ListFolder(Call& call, const std::string& fid, const std::string& token);
};

// The seeded 429 or 5xx for the next request; drawn only when a rate is set.
std::optional<Error> GraphLikeServer::State::DrawFault() {
  if (random.rate_429 <= 0 && random.rate_5xx <= 0) return std::nullopt;
  const double r = static_cast<double>(SplitMix(fault_rng) >> 11) * 0x1.0p-53;
  if (r < random.rate_429) {
    ++counters.throttled_injected;
    Error e = MakeError(ErrorKind::kThrottled, "HTTP 429: too many requests (injected)");
    e.retry_after = std::chrono::seconds(1);
    return e;
  }
  if (r < random.rate_429 + random.rate_5xx) {
    ++counters.injected_5xx;
    return MakeError(ErrorKind::kTransient, "HTTP 503: the service is unavailable (injected)");
  }
  return std::nullopt;
}

// The mailbox's request window: a fixed window opened by its first request.
std::optional<Error> GraphLikeServer::State::ChargeWindow(Call& call) {
  const GraphLikeOptions& o = *call.options;
  if (o.window_requests <= 0) return std::nullopt;
  Mailbox& mb = mailboxes[call.user];
  const auto now = (o.clock ? *o.clock : RealClock()).Now();
  if (!mb.window_start || now - *mb.window_start >= o.window) {
    mb.window_start = now;
    mb.window_count = 0;
  }
  if (mb.window_count < o.window_requests) {
    ++mb.window_count;
    return std::nullopt;
  }
  ++counters.throttled_window;
  auto wait = std::chrono::ceil<std::chrono::seconds>(*mb.window_start + o.window - now);
  Error e = MakeError(ErrorKind::kThrottled,
                      "HTTP 429: over the mailbox's limit of " + std::to_string(o.window_requests) +
                          " requests per " + std::to_string(o.window.count()) + " s");
  e.retry_after = std::max<std::chrono::milliseconds>(wait, std::chrono::seconds(1));
  return e;
}

// Sends one request or sub-request of the call: counts it, then answers the
// hook's fault, a seeded fault or the window's 429 instead of running it
// (none of which charges the window). A fault after the write is left in
// call.lost for the op to report.
std::optional<Error> GraphLikeServer::State::Admit(Call& call, const GraphLikeStep& step) {
  ++(call.batch ? counters.sub_requests : counters.http_requests);
  const std::optional<Error> drawn = DrawFault();  // always drawn: the sequence stays put
  const std::optional<StepFault> hooked = fault ? fault(step) : std::nullopt;
  if (hooked && !hooked->after_write) return hooked->error;
  if (drawn) return drawn;
  if (std::optional<Error> e = ChargeWindow(call)) return e;
  if (hooked) {
    call.lost = hooked->error;
    call.photo_lost = step.kind == "photo";
  }
  return std::nullopt;
}

// Takes `slots` of the mailbox for the call, or answers the concurrency 429
// to each of its `requests` requests, none of which then runs.
std::optional<Error> GraphLikeServer::State::TakeSlots(Call& call, size_t slots, size_t requests) {
  Mailbox& mb = mailboxes[call.user];
  const int limit = call.options->concurrency;
  const int want = static_cast<int>(slots);
  if (limit > 0 && mb.in_flight + want > limit) {
    const auto n = static_cast<int64_t>(requests);
    (call.batch ? counters.sub_requests : counters.http_requests) += n;
    counters.throttled_concurrency += n;
    Error e = MakeError(ErrorKind::kThrottled, "HTTP 429: over the mailbox's limit of " +
                                                   std::to_string(limit) + " requests in flight");
    e.retry_after = std::chrono::seconds(1);
    return e;
  }
  mb.in_flight += want;
  call.slots = want;
  int& most = counters.max_in_flight[call.user];
  most = std::max(most, mb.in_flight);
  return std::nullopt;
}

void GraphLikeServer::State::GiveSlots(Call& call) {
  mailboxes[call.user].in_flight -= call.slots;
  call.slots = 0;
}

WriteOutcome GraphLikeServer::State::RunOp(Call& call, const std::string& fid, const WriteOp& op) {
  call.lost.reset();
  call.photo_lost = false;
  WriteOutcome out;
  switch (op.kind) {
    case WriteOp::Kind::kCreate:
      out = Create(call, fid, op);
      break;
    case WriteOp::Kind::kUpdate:
      out = Update(call, fid, op);
      break;
    case WriteOp::Kind::kDelete:
      out = Delete(call, fid, op);
      break;
  }
  if (call.lost) MarkLost(op, *call.lost, call.photo_lost, &out);
  return out;
}

// POST the contact with its marker, then PUT its photo.
WriteOutcome GraphLikeServer::State::Create(Call& call, const std::string& fid, const WriteOp& op) {
  WriteOutcome out;
  const Contact* c = BodyContact(op.body);
  if (!c) return Failed(std::move(out), NotAContact());
  if (auto e = Admit(call, {"create", call.user, "", op.tag.key})) {
    return Failed(std::move(out), *e);
  }
  Folder* f = FindFolder(call.user, fid);
  if (!f) return Failed(std::move(out), FolderGone(fid));
  if (auto e = CheckShape(*c)) return Failed(std::move(out), *e);
  const std::string href = MintId();
  StoredItem& item = f->items[href];
  item.tag = op.tag;
  const Props props = ToGraph(*c);
  ApplyProps(item, props);
  Touch(*f, href, item);
  ++counters.creates;
  counters.fields_sent += static_cast<int64_t>(props.size()) + 1;  // and the marker
  out.result = {href, item.etag};
  PutPhoto(call, *f, href, GraphPhoto(c->photo), op.tag.key, &out);
  return out;
}

// PATCH what differs, then PUT the photo if it differs; an update with
// nothing to send sends nothing. Preconditions are checked even then, as if
// it had been sent, so that tests see a concurrent change.
WriteOutcome GraphLikeServer::State::Update(Call& call, const std::string& fid, const WriteOp& op) {
  WriteOutcome out;
  out.result.href = op.href;
  const Contact* c = BodyContact(op.body);
  if (!c) return Failed(std::move(out), NotAContact());
  Folder* f = FindFolder(call.user, fid);
  StoredItem* item = FindItem(f, op.href);
  const UpdatePlan plan = PlanUpdate(*c, op, item);
  const char* first = plan.contact_step() ? "update" : plan.photo ? "photo" : nullptr;
  if (first) {
    if (auto e = Admit(call, {first, call.user, op.href, op.tag.key})) {
      return Failed(std::move(out), *e);
    }
  }
  if (!f) return Failed(std::move(out), FolderGone(fid));
  if (!item) return Failed(std::move(out), MakeError(ErrorKind::kNotFound, "HTTP 404: " + op.href));
  if (!op.if_match.empty() && item->etag != op.if_match) {
    return Failed(std::move(out),
                  MakeError(ErrorKind::kPreconditionFailed, "PATCH " + op.href + ": HTTP 412"));
  }
  if (plan.contact_step()) {
    if (auto e = CheckShape(*c)) return Failed(std::move(out), *e);
    ApplyProps(*item, plan.patch);
    item->tag = op.tag;
    Touch(*f, op.href, *item);
    ++counters.updates;
    counters.fields_sent += static_cast<int64_t>(plan.patch.size()) + (plan.tag_changes ? 1 : 0);
    out.result.etag = item->etag;
    PutPhoto(call, *f, op.href, plan.photo, op.tag.key, &out);
  } else if (plan.photo) {
    StorePhoto(*f, op.href, *item, *plan.photo, &out);
  } else {
    ++counters.noop_updates;
    out.result.etag = item->etag;
  }
  if (out.status.ok() && plan.removes_photo) {
    out.status = MakeError(ErrorKind::kConflict,
                           "Graph cannot remove a contact's photo; " + op.href + " keeps it");
    if (plan.contact_step()) out.landed = ItemBody(ViewOf(*item));
  }
  return out;
}

WriteOutcome GraphLikeServer::State::Delete(Call& call, const std::string& fid, const WriteOp& op) {
  WriteOutcome out;
  out.result.href = op.href;
  if (auto e = Admit(call, {"delete", call.user, op.href, ""})) return Failed(std::move(out), *e);
  Folder* f = FindFolder(call.user, fid);
  const StoredItem* item = FindItem(f, op.href);
  if (!item) return out;  // gone already: done
  if (!op.if_match.empty() && item->etag != op.if_match) {
    return Failed(std::move(out),
                  MakeError(ErrorKind::kPreconditionFailed, "DELETE " + op.href + ": HTTP 412"));
  }
  f->items.erase(op.href);
  f->changed_at[op.href] = ++f->version;
  ++counters.deletes;
  return out;
}

void GraphLikeServer::State::StorePhoto(Folder& f, const std::string& href, StoredItem& item,
                                        const Photo& photo, WriteOutcome* out) {
  item.photo = photo;
  Touch(f, href, item);
  ++counters.photo_writes;
  out->result = {href, item.etag};
}

// The dependent step after a contact step that landed: PUT the photo when it
// differs from the stored one. When it fails, the outcome names the item and
// says what the server holds (the contact without the new photo).
void GraphLikeServer::State::PutPhoto(Call& call, Folder& f, const std::string& href,
                                      const std::optional<Photo>& photo, const std::string& key,
                                      WriteOutcome* out) {
  StoredItem& item = f.items.at(href);
  if (!photo || photo == item.photo) return;
  if (auto e = Admit(call, {"photo", call.user, href, key})) {
    out->status = *e;
    out->landed = ItemBody(ViewOf(item));
    return;
  }
  StorePhoto(f, href, item, *photo, out);
}

// The answer never came: the client knows only what it sent (and the new
// id, when only the photo step's answer was lost).
void GraphLikeServer::State::MarkLost(const WriteOp& op, Error error, bool keep_href,
                                      WriteOutcome* out) {
  ++counters.answers_lost;
  out->status = std::move(error);
  out->ambiguous = true;
  out->landed.reset();
  if (!keep_href) out->result.href = op.kind == WriteOp::Kind::kCreate ? "" : op.href;
  out->result.etag.clear();
}

// The seeded lost answer of a whole write call, drawn once per call when
// the call wrote something.
void GraphLikeServer::State::LoseAnswers(const std::vector<WriteOp>& ops, int64_t writes_before,
                                         std::vector<WriteOutcome>* outcomes) {
  if (random.rate_lost <= 0) return;
  const double r = static_cast<double>(SplitMix(fault_rng) >> 11) * 0x1.0p-53;
  if (r >= random.rate_lost || counters.writes() == writes_before) return;
  for (size_t i = 0; i < ops.size(); ++i) {
    MarkLost(ops[i],
             MakeError(ErrorKind::kTransient, "the answer was lost after the write (injected)"),
             false, &(*outcomes)[i]);
  }
}

Status GraphLikeServer::State::FetchItems(Call& call, const std::string& fid,
                                          std::span<const std::string> hrefs,
                                          std::vector<RemoteItem>* out) {
  for (const std::string& href : hrefs) {
    call.lost.reset();
    if (auto e = Admit(call, {"fetch", call.user, href, ""})) return *e;
    if (call.lost) return *call.lost;
    Folder* f = FindFolder(call.user, fid);
    if (!f) return FolderGone(fid);
    auto it = f->items.find(href);
    if (it == f->items.end()) continue;  // a 404 sub-response: left out
    out->push_back(RemoteOf(href, it->second));
    ++counters.fetched;
  }
  return {};
}

std::optional<Error> GraphLikeServer::State::AdmitPage(Call& call) {
  call.lost.reset();
  if (auto e = Admit(call, {"list", call.user, "", ""})) return e;
  if (call.lost) return call.lost;
  ++counters.list_pages;
  return std::nullopt;
}

namespace {

// Tokens name their folder and its version: "<folder id>:<version>".
int64_t TokenVersion(const Folder& f, const std::string& token) {
  const std::string prefix = f.id + ":";
  if (!token.starts_with(prefix)) return 0;
  const std::string rest = token.substr(prefix.size());
  if (!AllDigits(rest) || rest.size() > 18) return 0;
  const int64_t v = std::stoll(rest);
  return v > 0 && v <= f.version ? v : 0;
}

// Everything (`token` unknown), or what changed since it; with the content
// and marker of every listed item, as Graph lists with the marker expanded.
Listing ListingOf(const Folder& f, const std::string& token) {
  Listing listing;
  listing.sync_token = f.id + ":" + std::to_string(f.version);
  const int64_t since = TokenVersion(f, token);
  listing.full = since == 0;
  for (const auto& [href, version] : f.changed_at) {
    if (version <= since) continue;
    auto it = f.items.find(href);
    if (it == f.items.end()) {
      if (!listing.full) listing.removed.push_back(href);
      continue;
    }
    listing.changed.push_back({href, it->second.etag});
    listing.items.push_back(RemoteOf(href, it->second));
  }
  return listing;
}

}  // namespace

// Pages of 100, each one request: the first finds out whether the folder is
// still there.
Result<Listing> GraphLikeServer::State::ListFolder(Call& call, const std::string& fid,
                                                   const std::string& token) {
  if (auto e = AdmitPage(call)) return *e;
  Folder* f = FindFolder(call.user, fid);
  if (!f) return FolderGone(fid);
  Listing listing = ListingOf(*f, token);
  const size_t entries = listing.changed.size() + listing.removed.size();
  for (size_t page = 1; page * kPageSize < entries; ++page) {
    if (auto e = AdmitPage(call)) return *e;
  }
  return listing;
}

// --- the adapter ---------------------------------------------------------------------

class GraphLikeCollection final : public Collection {
 public:
  GraphLikeCollection(std::shared_ptr<GraphLikeServer> server, const GraphLikeOptions& options,
                      std::string user, std::string folder_id)
      : server_(std::move(server)),
        options_(options),
        user_(std::move(user)),
        folder_id_(std::move(folder_id)) {}

  std::string id() const override {
    return "graph-like:/users/" + user_ + "/contactFolders/" + folder_id_;
  }
  CreateMode create_mode() const override { return CreateMode::kServerId; }
  size_t max_batch() const override { return kMaxBatch; }
  // Graph runs up to 4 requests of one $batch at once.
  int parallel_per_batch() const override { return 4; }
  std::string limit_bucket() const override { return "graph-like/" + user_; }
  bool update_reads_current() const override { return true; }

  Result<Listing> List(const std::string& sync_token) override {
    GraphLikeServer::State& s = *server_->state_;
    std::unique_lock lock(s.mu);
    Call call = NewCall(false);
    if (auto e = s.TakeSlots(call, 1, 1)) return *e;
    PauseInFlight(lock, "list");
    Result<Listing> listing = s.ListFolder(call, folder_id_, sync_token);
    s.GiveSlots(call);
    return listing;
  }

  // $batch GETs of up to 20.
  Result<std::vector<RemoteItem>> Fetch(const std::vector<std::string>& hrefs) override {
    std::vector<RemoteItem> out;
    const std::span<const std::string> all(hrefs);
    for (size_t i = 0; i < all.size(); i += kMaxBatch) {
      ROSTER_RETURN_IF_ERROR(FetchChunk(all.subspan(i, std::min(kMaxBatch, all.size() - i)), &out));
    }
    return out;
  }

  // The name is ignored: the server chooses the id.
  Result<WriteResult> Create(const std::string& name, const ManagedTag& tag,
                             const ItemBody& body) override {
    WriteOp op;
    op.kind = WriteOp::Kind::kCreate;
    op.name = name;
    op.tag = tag;
    op.body = &body;
    return Single("create", op);
  }

  // Without the item as read, the merge is against what the server holds.
  Result<WriteResult> Update(const std::string& href, const std::string& if_match,
                             const ManagedTag& tag, const ItemBody& body) override {
    WriteOp op;
    op.kind = WriteOp::Kind::kUpdate;
    op.href = href;
    op.if_match = if_match;
    op.tag = tag;
    op.body = &body;
    return Single("update", op);
  }

  Status Delete(const std::string& href, const std::string& if_match) override {
    WriteOp op;
    op.kind = WriteOp::Kind::kDelete;
    op.href = href;
    op.if_match = if_match;
    Result<WriteResult> done = Single("delete", op);
    if (!done.ok()) return done.take_error();
    return {};
  }

  std::vector<WriteOutcome> WriteBatch(const std::vector<WriteOp>& ops) override {
    if (ops.empty()) return {};
    GraphLikeServer::State& s = *server_->state_;
    std::unique_lock lock(s.mu);
    Call call = NewCall(true);
    ++s.counters.http_requests;
    ++s.counters.batch_calls;
    if (ops.size() > kMaxBatch) {
      return Every(ops.size(), MakeError(ErrorKind::kInvalidArgument,
                                         "HTTP 400: a $batch holds at most 20 requests; " +
                                             std::to_string(ops.size()) + " were sent"));
    }
    if (auto e = s.TakeSlots(call, std::min(ops.size(), kBatchParallel), ops.size())) {
      return Every(ops.size(), *e);
    }
    PauseInFlight(lock, "batch");
    const int64_t writes = s.counters.writes();
    std::vector<WriteOutcome> out;
    out.reserve(ops.size());
    for (const WriteOp& op : ops) out.push_back(s.RunOp(call, folder_id_, op));
    s.LoseAnswers(ops, writes, &out);
    s.GiveSlots(call);
    return out;
  }

 private:
  Call NewCall(bool batch) const {
    Call call;
    call.user = user_;
    call.options = &options_;
    call.batch = batch;
    return call;
  }

  // Runs the in-flight hook, if any, without the server's lock.
  void PauseInFlight(std::unique_lock<std::mutex>& lock, const std::string& name) {
    auto hook = server_->state_->in_flight_hook;
    if (!hook) return;
    lock.unlock();
    hook(user_, name);
    lock.lock();
  }

  static std::vector<WriteOutcome> Every(size_t n, const Error& error) {
    std::vector<WriteOutcome> out(n);
    for (WriteOutcome& o : out) o.status = error;
    return out;
  }

  Status FetchChunk(std::span<const std::string> hrefs, std::vector<RemoteItem>* out) {
    GraphLikeServer::State& s = *server_->state_;
    std::unique_lock lock(s.mu);
    Call call = NewCall(true);
    ++s.counters.http_requests;
    ++s.counters.batch_calls;
    if (auto e = s.TakeSlots(call, std::min(hrefs.size(), kBatchParallel), hrefs.size())) {
      return *e;
    }
    PauseInFlight(lock, "fetch");
    Status status = s.FetchItems(call, folder_id_, hrefs, out);
    s.GiveSlots(call);
    return status;
  }

  // A Create, Update or Delete of its own: one HTTP request per step.
  Result<WriteResult> Single(const std::string& name, const WriteOp& op) {
    GraphLikeServer::State& s = *server_->state_;
    std::unique_lock lock(s.mu);
    Call call = NewCall(false);
    if (auto e = s.TakeSlots(call, 1, 1)) return *e;
    PauseInFlight(lock, name);
    const int64_t writes = s.counters.writes();
    std::vector<WriteOutcome> out = {s.RunOp(call, folder_id_, op)};
    s.LoseAnswers({op}, writes, &out);
    s.GiveSlots(call);
    if (!out[0].status.ok()) return out[0].status.take_error();
    return out[0].result;
  }

  std::shared_ptr<GraphLikeServer> server_;
  const GraphLikeOptions options_;
  const std::string user_;
  const std::string folder_id_;
};

class GraphLikeTarget final : public Target {
 public:
  GraphLikeTarget(std::shared_ptr<GraphLikeServer> server, GraphLikeOptions options)
      : server_(std::move(server)), options_(options) {}

  // A remembered folder is opened without a request; otherwise one request
  // looks it up by display name and one more creates it.
  Result<std::unique_ptr<Collection>> Open(const CollectionSpec& spec, bool create) override {
    GraphLikeServer::State& s = *server_->state_;
    std::lock_guard lock(s.mu);
    const std::string prefix = "graph-like:/users/" + spec.user + "/contactFolders/";
    if (spec.known_url.starts_with(prefix) && spec.known_url.size() > prefix.size() &&
        spec.known_url.find('/', prefix.size()) == std::string::npos) {
      return Make(spec.user, spec.known_url.substr(prefix.size()));
    }
    ++s.counters.http_requests;
    if (Folder* f = s.FindFolderByName(spec.user, spec.display_name)) return Make(spec.user, f->id);
    if (!create) {
      return MakeError(ErrorKind::kNotFound,
                       "no contact folder \"" + spec.display_name + "\" for " + spec.user);
    }
    ++s.counters.http_requests;
    ++s.counters.folder_creates;
    return Make(spec.user, s.MakeFolder(spec.user, spec.display_name).id);
  }

  int max_in_flight() const override { return options_.max_in_flight; }

  ItemBody Project(const ItemBody& body) const override {
    // The client's side of the contract: what the real Graph target declares.
    if (std::holds_alternative<Contact>(body)) return ProjectGraphContact(body);
    return body;
  }

  std::string projection_name() const override { return "graph-like-contact-1"; }

 private:
  std::unique_ptr<Collection> Make(const std::string& user, const std::string& fid) const {
    return std::make_unique<GraphLikeCollection>(server_, options_, user, fid);
  }

  std::shared_ptr<GraphLikeServer> server_;
  const GraphLikeOptions options_;
};

// --- inspection and control ---------------------------------------------------------

GraphLikeServer::GraphLikeServer(uint64_t seed) : state_(std::make_unique<State>(seed)) {}
GraphLikeServer::~GraphLikeServer() = default;

std::map<std::string, GraphLikeItem> GraphLikeServer::Items(const std::string& user,
                                                            const std::string& folder) {
  std::lock_guard lock(state_->mu);
  std::map<std::string, GraphLikeItem> out;
  Folder* f = state_->FindFolderByName(user, folder);
  if (!f) return out;
  for (const auto& [href, item] : f->items) {
    out[href] = GraphLikeItem{item.etag, item.tag, FromGraph(item.props), item.photo, item.file_as};
  }
  return out;
}

std::string GraphLikeServer::FolderId(const std::string& user, const std::string& folder) {
  std::lock_guard lock(state_->mu);
  Folder* f = state_->FindFolderByName(user, folder);
  return f ? f->id : std::string();
}

std::string GraphLikeServer::AddFolder(const std::string& user, const std::string& folder) {
  std::lock_guard lock(state_->mu);
  Folder* f = state_->FindFolderByName(user, folder);
  return f ? f->id : state_->MakeFolder(user, folder).id;
}

bool GraphLikeServer::RemoveFolder(const std::string& user, const std::string& folder) {
  std::lock_guard lock(state_->mu);
  Folder* f = state_->FindFolderByName(user, folder);
  if (!f) return false;
  state_->mailboxes[user].folders.erase(f->id);
  return true;
}

std::string GraphLikeServer::PutByHand(const std::string& user, const std::string& folder,
                                       const Contact& contact) {
  std::lock_guard lock(state_->mu);
  Folder* f = state_->FindFolderByName(user, folder);
  if (!f) f = &state_->MakeFolder(user, folder);
  const std::string href = state_->MintId();
  StoredItem& item = f->items[href];
  ApplyProps(item, ToGraph(contact));
  item.photo = GraphPhoto(contact.photo);
  state_->Touch(*f, href, item);
  return href;
}

std::string GraphLikeServer::EditByHand(const std::string& user, const std::string& folder,
                                        const std::string& href, const Contact& contact) {
  std::lock_guard lock(state_->mu);
  Folder* f = state_->FindFolderByName(user, folder);
  StoredItem* found = FindItem(f, href);
  if (!found) return {};
  StoredItem& item = *found;
  item.props.clear();
  item.explicit_display_name = false;
  ApplyProps(item, ToGraph(contact));
  item.photo = GraphPhoto(contact.photo);
  state_->Touch(*f, href, item);
  return item.etag;
}

void GraphLikeServer::RemoveByHand(const std::string& user, const std::string& folder,
                                   const std::string& href) {
  std::lock_guard lock(state_->mu);
  Folder* f = state_->FindFolderByName(user, folder);
  if (!f || !f->items.erase(href)) return;
  f->changed_at[href] = ++f->version;
}

GraphLikeCounters GraphLikeServer::counters() {
  std::lock_guard lock(state_->mu);
  return state_->counters;
}

void GraphLikeServer::ResetCounters() {
  std::lock_guard lock(state_->mu);
  state_->counters = {};
}

int GraphLikeServer::in_flight(const std::string& user) {
  std::lock_guard lock(state_->mu);
  return state_->mailboxes[user].in_flight;
}

void GraphLikeServer::SetFault(
    std::function<std::optional<StepFault>(const GraphLikeStep&)> fault) {
  std::lock_guard lock(state_->mu);
  state_->fault = std::move(fault);
}

void GraphLikeServer::SetRandomFaults(const RandomFaults& faults) {
  std::lock_guard lock(state_->mu);
  state_->random = faults;
  state_->fault_rng = faults.seed;
}

void GraphLikeServer::SetInFlightHook(
    std::function<void(const std::string& user, const std::string& call)> hook) {
  std::lock_guard lock(state_->mu);
  state_->in_flight_hook = std::move(hook);
}

std::unique_ptr<Target> NewGraphLikeTarget(std::shared_ptr<GraphLikeServer> server,
                                           GraphLikeOptions options) {
  return std::make_unique<GraphLikeTarget>(std::move(server), options);
}

}  // namespace roster
