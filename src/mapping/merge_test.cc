#include "mapping/merge.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

namespace roster {
namespace {

using Strings = std::vector<std::string>;

FieldPolicy Policy(const std::string& field, FieldMode mode) {
  FieldPolicy policy;
  policy.modes[field] = mode;
  return policy;
}

// A card whose title (or mobile numbers) is `value`; nullopt for "no value".
Contact WithTitle(const std::optional<std::string>& value) {
  Contact c;
  c.formatted_name = "Jane Doe";
  if (value) c.title = *value;
  return c;
}

std::string TitleHash(const std::string& value) {
  return FieldValueHash(WithTitle(value), "title");
}

// One sync decision, from the field's point of view.
struct Case {
  const char* name;
  FieldMode mode;
  std::string source;
  std::optional<std::string> remote;  // nullopt: no card yet
  std::optional<std::string> before;  // value whose hash the memory holds
  std::string want;
  std::optional<std::string> want_memory;  // value whose hash `after` holds
};

TEST(MergeContactTest, DecidesEachFieldByItsMode) {
  const std::vector<Case> cases = {
      {"overwrite ignores the card", FieldMode::kOverwrite, "CTO", "Boss", std::nullopt, "CTO",
       std::nullopt},
      {"overwrite ignores memory", FieldMode::kOverwrite, "CTO", "Boss", "CEO", "CTO",
       std::nullopt},
      {"if_blank keeps a filled card", FieldMode::kIfBlank, "CTO", "Boss", std::nullopt, "Boss",
       std::nullopt},
      {"if_blank fills a blank card", FieldMode::kIfBlank, "CTO", "", std::nullopt, "CTO",
       std::nullopt},
      {"if_blank on a new card", FieldMode::kIfBlank, "CTO", std::nullopt, std::nullopt, "CTO",
       std::nullopt},
      {"keep_user on a new card", FieldMode::kKeepUser, "CTO", std::nullopt, std::nullopt, "CTO",
       "CTO"},
      {"keep_user follows the source while nobody edits", FieldMode::kKeepUser, "CEO", "CTO", "CTO",
       "CEO", "CEO"},
      {"keep_user keeps an edit when the source changes", FieldMode::kKeepUser, "CEO", "Boss",
       "CTO", "Boss", "CTO"},
      {"keep_user keeps an edit when the source stays", FieldMode::kKeepUser, "CTO", "Boss", "CTO",
       "Boss", "CTO"},
      {"keep_user keeps a cleared field cleared", FieldMode::kKeepUser, "CTO", "", "CTO", "",
       "CTO"},
      {"keep_user adopts the person's own value", FieldMode::kKeepUser, "CTO", "Boss", std::nullopt,
       "Boss", "CTO"},
      {"keep_user adopting a blank card fills it", FieldMode::kKeepUser, "CTO", "", std::nullopt,
       "CTO", "CTO"},
      {"keep_user adopting an equal card", FieldMode::kKeepUser, "CTO", "CTO", std::nullopt, "CTO",
       "CTO"},
      {"keep_user: edited back to roster's value hands it back", FieldMode::kKeepUser, "CEO", "CTO",
       "CTO", "CEO", "CEO"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const Contact source = WithTitle(c.source);
    const std::optional<Contact> remote =
        c.remote ? std::optional<Contact>(WithTitle(*c.remote)) : std::nullopt;
    FieldMemory before;
    if (c.before) before["title"] = TitleHash(*c.before);
    FieldMemory after = {{"stale", "00"}};
    const Contact merged =
        MergeContact(source, remote ? &*remote : nullptr, Policy("title", c.mode), before, &after);
    EXPECT_EQ(merged.title, c.want);
    FieldMemory want_after;
    if (c.want_memory) want_after["title"] = TitleHash(*c.want_memory);
    EXPECT_EQ(after, want_after);
  }
}

// Several syncs in a row, as the engine runs them: the card is what the last
// merge wrote, unless the person edits it in between.
TEST(MergeContactTest, AnEditSurvivesEveryLaterSync) {
  const FieldPolicy policy = Policy("title", FieldMode::kKeepUser);
  FieldMemory memory;
  Contact card = MergeContact(WithTitle("Engineer"), nullptr, policy, {}, &memory);
  EXPECT_EQ(card.title, "Engineer");

  card = MergeContact(WithTitle("Senior Engineer"), &card, policy, FieldMemory(memory), &memory);
  EXPECT_EQ(card.title, "Senior Engineer");  // nobody edited: the source wins

  card.title = "Chief Tinkerer";  // edited on a phone
  for (const char* source : {"Senior Engineer", "Staff Engineer", "Principal Engineer"}) {
    card = MergeContact(WithTitle(source), &card, policy, FieldMemory(memory), &memory);
    EXPECT_EQ(card.title, "Chief Tinkerer") << source;
  }
  card.title = "";  // and later cleared
  for (const char* source : {"Principal Engineer", "Fellow"}) {
    card = MergeContact(WithTitle(source), &card, policy, FieldMemory(memory), &memory);
    EXPECT_EQ(card.title, "") << source;
  }
}

TEST(MergeContactTest, MultiValuedFieldsCompareAsSortedLists) {
  Contact source;
  source.phones = {{"+441", {"cell"}, false}, {"+442", {"cell"}, false}, {"+449", {"work"}, false}};
  Contact remote;
  remote.phones = {{" +442 ", {"CELL"}, true}, {"+441", {"cell"}, false}, {"+448", {"car"}, false}};
  const FieldPolicy policy = Policy("mobile", FieldMode::kKeepUser);
  const FieldMemory before = {{"mobile", FieldValueHash(source, "mobile")}};
  FieldMemory after;
  // Same numbers in another order: not an edit, so the source's entries.
  Contact merged = MergeContact(source, &remote, policy, before, &after);
  EXPECT_EQ(merged.phones, source.phones);

  // An edit is kept with its own types and flags; the other numbers (work,
  // and "car", which counts as phone_other) still come from the source.
  remote.phones[0].value = "+443";
  merged = MergeContact(source, &remote, policy, before, &after);
  EXPECT_EQ(GetContactField(merged, "mobile"), (Strings{"+443", "+441"}));
  EXPECT_EQ(merged.phones[1], (TypedValue{"+443", {"CELL"}, true}));
  EXPECT_EQ(GetContactField(merged, "work_phone"), Strings{"+449"});
  EXPECT_TRUE(GetContactField(merged, "phone_other").empty());
}

TEST(MergeContactTest, WhatNoFieldCoversComesFromTheSource) {
  Contact source;
  source.formatted_name = "Jane";
  source.addresses = {{{"work"}, "PO 1", "Room 4", "1 Row", "London", "", "", ""},
                      {{"other"}, "", "", "9 Side St", "", "", "", ""}};
  source.department = "Research";
  Contact remote = source;
  remote.addresses[0] = {{"work"}, "PO 2", "Room 5", "2 Row", "Leeds", "", "", ""};
  remote.addresses.pop_back();
  remote.department = "Sales";
  FieldPolicy policy;
  policy.modes = {{"office", FieldMode::kIfBlank}, {"city", FieldMode::kIfBlank}};
  const Contact merged = MergeContact(source, &remote, policy, {}, nullptr);
  ASSERT_EQ(merged.addresses.size(), 2u);
  EXPECT_EQ(merged.addresses[0],
            (PostalAddress{{"work"}, "PO 1", "Room 5", "1 Row", "Leeds", "", "", ""}));
  EXPECT_EQ(merged.addresses[1], source.addresses[1]);
  EXPECT_EQ(merged.department, "Research");
}

TEST(MergeContactTest, PhotoIsAFieldToo) {
  Contact source;
  source.photo = Photo{"image/jpeg", "source-bytes", ""};
  Contact remote;
  remote.photo = Photo{"image/png", "user-bytes", ""};
  const FieldMemory before = {{"photo", FieldValueHash(source, "photo")}};
  FieldMemory after;
  EXPECT_EQ(
      MergeContact(source, &remote, Policy("photo", FieldMode::kKeepUser), before, &after).photo,
      remote.photo);
  EXPECT_EQ(after, before);
  EXPECT_EQ(MergeContact(source, &remote, Policy("photo", FieldMode::kIfBlank), {}, nullptr).photo,
            remote.photo);
  EXPECT_EQ(
      MergeContact(source, &remote, Policy("photo", FieldMode::kOverwrite), {}, nullptr).photo,
      source.photo);
  Contact blank;
  EXPECT_EQ(MergeContact(source, &blank, Policy("photo", FieldMode::kIfBlank), {}, nullptr).photo,
            source.photo);
  // A removed photo stays removed.
  EXPECT_FALSE(MergeContact(source, &blank, Policy("photo", FieldMode::kKeepUser), before, &after)
                   .photo.has_value());
  EXPECT_NE(FieldValueHash(source, "photo"), FieldValueHash(remote, "photo"));
  EXPECT_EQ(FieldValueHash(blank, "photo"), FieldValueHash(Contact{}, "photo"));
}

TEST(MergeContactTest, NoRulesMeansTheSource) {
  Contact source;
  source.formatted_name = "Jane";
  source.title = "CTO";
  Contact remote;
  remote.title = "Boss";
  FieldMemory after = {{"title", "ab"}};
  EXPECT_EQ(MergeContact(source, &remote, FieldPolicy{}, {{"title", "ab"}}, &after), source);
  EXPECT_TRUE(after.empty());
}

TEST(FieldValueHashTest, IsShortAndSeesEveryDifference) {
  Contact a;
  a.categories = {"b", "a"};
  Contact b;
  b.categories = {"a", "b"};
  Contact c;
  c.categories = {"a,b"};
  EXPECT_EQ(FieldValueHash(a, "categories").size(), 16u);
  EXPECT_EQ(FieldValueHash(a, "categories"), FieldValueHash(b, "categories"));
  EXPECT_NE(FieldValueHash(a, "categories"), FieldValueHash(c, "categories"));
  EXPECT_NE(FieldValueHash(a, "categories"), FieldValueHash(Contact{}, "categories"));
}

TEST(FieldPolicyTest, ParsesModesAndNamesWhatIsWrong) {
  Result<FieldPolicy> policy = ParseFieldPolicy({{"mobile", "keep_user"},
                                                 {" Title ", "IF_BLANK"},
                                                 {"photo", "keep_user"},
                                                 {"note", "overwrite"}});
  ASSERT_TRUE(policy.ok()) << policy.error().message;
  EXPECT_EQ(policy->ModeOf("mobile"), FieldMode::kKeepUser);
  EXPECT_EQ(policy->ModeOf("title"), FieldMode::kIfBlank);
  EXPECT_EQ(policy->ModeOf("photo"), FieldMode::kKeepUser);
  EXPECT_EQ(policy->ModeOf("email"), FieldMode::kOverwrite);
  EXPECT_FALSE(policy->empty());

  Result<FieldPolicy> unknown_field = ParseFieldPolicy({{"shoe_size", "keep_user"}});
  ASSERT_FALSE(unknown_field.ok());
  EXPECT_EQ(unknown_field.error().kind, ErrorKind::kInvalidArgument);
  EXPECT_EQ(unknown_field.error().message, "field rules name an unknown field \"shoe_size\"");
  Result<FieldPolicy> unknown_mode = ParseFieldPolicy({{"mobile", "sometimes"}});
  ASSERT_FALSE(unknown_mode.ok());
  EXPECT_EQ(unknown_mode.error().message,
            "field rule for mobile has unknown mode \"sometimes\" (use overwrite, if_blank or "
            "keep_user)");
  EXPECT_FALSE(ParseFieldPolicy({{"Title", "keep_user"}, {"title", "if_blank"}}).ok());
}

TEST(FieldPolicyTest, FingerprintFollowsTheEffect) {
  const FieldPolicy none;
  const FieldPolicy only_overwrite = Policy("title", FieldMode::kOverwrite);
  EXPECT_TRUE(none.empty());
  EXPECT_TRUE(only_overwrite.empty());
  EXPECT_EQ(none.Fingerprint(), "");
  EXPECT_EQ(only_overwrite.Fingerprint(), "");
  const std::string keep = Policy("title", FieldMode::kKeepUser).Fingerprint();
  EXPECT_EQ(keep.size(), 16u);
  EXPECT_EQ(keep, Policy("title", FieldMode::kKeepUser).Fingerprint());
  EXPECT_NE(keep, Policy("title", FieldMode::kIfBlank).Fingerprint());
  EXPECT_NE(keep, Policy("mobile", FieldMode::kKeepUser).Fingerprint());
}

TEST(FieldMemoryTest, RoundTripsCompactly) {
  const FieldMemory memory = {{"mobile", "0123456789abcdef"}, {"photo", "fedcba9876543210"}};
  const std::string encoded = EncodeFieldMemory(memory);
  EXPECT_EQ(encoded, "mobile=0123456789abcdef,photo=fedcba9876543210");
  Result<FieldMemory> back = DecodeFieldMemory(encoded);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, memory);
  EXPECT_EQ(EncodeFieldMemory({}), "");
  ASSERT_TRUE(DecodeFieldMemory("").ok());
  EXPECT_TRUE(DecodeFieldMemory("")->empty());
}

TEST(FieldMemoryTest, RejectsGarbage) {
  for (std::string_view garbage :
       {"x", "mobile", "mobile=", "=ab", "mobile=xyz", "mobile=AB", "Mobile=ab", "a=1,a=2", "a=1,",
        ",", ",a=1", "a=1;b=2", "a=1, b=2", "a==1", "a b=1", "a=1\n",
        "a=00000000000000000000000000000000000000000000000000000000000000000"}) {
    Result<FieldMemory> r = DecodeFieldMemory(garbage);
    EXPECT_FALSE(r.ok()) << garbage;
    if (!r.ok()) {
      EXPECT_EQ(r.error().kind, ErrorKind::kInvalidData);
    }
  }
  std::string bytes;
  for (int i = 0; i < 256; ++i) bytes.push_back(static_cast<char>(i));
  EXPECT_FALSE(DecodeFieldMemory(bytes).ok());
}

}  // namespace
}  // namespace roster
