#include "formats/vcard.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/hash.h"

namespace roster {
namespace {

using Strings = std::vector<std::string>;

// Joins lines with CRLF, the way the RFCs print cards.
std::string Crlf(const std::vector<std::string_view>& lines) {
  std::string out;
  for (std::string_view l : lines) {
    out += l;
    out += "\r\n";
  }
  return out;
}

ParsedVCard MustParse(std::string_view text) {
  Result<ParsedVCard> r = ParseVCard(text);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  return r.ok() ? std::move(r).value() : ParsedVCard{};
}

std::string ParseError(std::string_view text) {
  Result<std::vector<ParsedVCard>> r = ParseVCards(text);
  if (r.ok()) return "(parsed)";
  EXPECT_EQ(r.error().kind, ErrorKind::kInvalidData);
  return r.error().message;
}

const VCardProperty* FindOther(const ParsedVCard& card, std::string_view name) {
  for (const VCardProperty& p : card.other) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

// ---------------------------------------------------------------------------
// Cards printed in the RFCs.

// RFC 6350 section 8, the author's card.
TEST(ParseVCardTest, Rfc6350AuthorCard) {
  const ParsedVCard card = MustParse(Crlf({
      "BEGIN:VCARD",
      "VERSION:4.0",
      "FN:Simon Perreault",
      "N:Perreault;Simon;;;ing. jr,M.Sc.",
      "BDAY:--0203",
      "ANNIVERSARY:20090808T1430-0500",
      "GENDER:M",
      "LANG;PREF=1:fr",
      "LANG;PREF=2:en",
      "ORG;TYPE=work:Viagenie",
      "ADR;TYPE=work:;Suite D2-630;2875 Laurier;",
      " Quebec;QC;G1V 2M2;Canada",
      "TEL;VALUE=uri;TYPE=\"work,voice\";PREF=1:tel:+1-418-656-9254;ext=102",
      "TEL;VALUE=uri;TYPE=\"work,cell,voice,video,text\":tel:+1-418-262-6501",
      "EMAIL;TYPE=work:simon.perreault@viagenie.ca",
      "GEO;TYPE=work:geo:46.772673,-71.282945",
      "KEY;TYPE=work;VALUE=uri:",
      " http://www.viagenie.ca/simon.perreault/simon.asc",
      "TZ:-0500",
      "URL;TYPE=home:http://nomis80.org",
      "END:VCARD",
  }));
  const Contact& c = card.contact;
  EXPECT_EQ(card.version, "4.0");
  EXPECT_EQ(c.formatted_name, "Simon Perreault");
  EXPECT_EQ(c.family_name, "Perreault");
  EXPECT_EQ(c.given_name, "Simon");
  EXPECT_EQ(c.honorific_suffix, "ing. jr,M.Sc.");
  EXPECT_EQ(c.birthday, "--0203");
  EXPECT_EQ(c.organization, "Viagenie");
  ASSERT_EQ(c.addresses.size(), 1u);
  EXPECT_EQ(
      c.addresses[0],
      (PostalAddress{
          {"work"}, "", "Suite D2-630", "2875 Laurier", "Quebec", "QC", "G1V 2M2", "Canada"}));
  ASSERT_EQ(c.phones.size(), 2u);
  EXPECT_EQ(c.phones[0], (TypedValue{"+1-418-656-9254;ext=102", {"work", "voice"}, true}));
  EXPECT_EQ(c.phones[1],
            (TypedValue{"+1-418-262-6501", {"work", "cell", "voice", "video", "text"}, false}));
  ASSERT_EQ(c.emails.size(), 1u);
  EXPECT_EQ(c.emails[0], (TypedValue{"simon.perreault@viagenie.ca", {"work"}, false}));
  ASSERT_EQ(c.urls.size(), 1u);
  EXPECT_EQ(c.urls[0], (TypedValue{"http://nomis80.org", {"home"}, false}));

  Strings other;
  for (const VCardProperty& p : card.other) other.push_back(p.name);
  EXPECT_EQ(other, (Strings{"ANNIVERSARY", "GENDER", "LANG", "LANG", "GEO", "KEY", "TZ"}));
  EXPECT_EQ(card.Get("KEY"), "http://www.viagenie.ca/simon.perreault/simon.asc");
  EXPECT_EQ(card.Get("GEO"), "geo:46.772673,-71.282945");
  const VCardProperty* lang = FindOther(card, "LANG");
  ASSERT_NE(lang, nullptr);
  ASSERT_EQ(lang->params.size(), 1u);
  EXPECT_EQ(lang->params[0].first, "PREF");
  EXPECT_EQ(lang->params[0].second, Strings{"1"});
}

// RFC 2426 section 7, the authors' cards, as one stream.
TEST(ParseVCardTest, Rfc2426AuthorCards) {
  Result<std::vector<ParsedVCard>> cards = ParseVCards(Crlf({
      "BEGIN:vCard",
      "VERSION:3.0",
      "FN:Frank Dawson",
      "ORG:Lotus Development Corporation",
      "ADR;TYPE=WORK,POSTAL,PARCEL:;;6544 Battleford Drive",
      " ;Raleigh;NC;27613-3502;U.S.A.",
      "TEL;TYPE=VOICE,MSG,WORK:+1-919-676-9515",
      "TEL;TYPE=FAX,WORK:+1-919-676-9564",
      "EMAIL;TYPE=INTERNET,PREF:Frank_Dawson@Lotus.com",
      "EMAIL;TYPE=INTERNET:fdawson@earthlink.net",
      "URL:http://home.earthlink.net/~fdawson",
      "END:vCard",
      "",
      "",
      "BEGIN:vCard",
      "VERSION:3.0",
      "FN:Tim Howes",
      "ORG:Netscape Communications Corp.",
      "ADR;TYPE=WORK:;;501 E. Middlefield Rd.;Mountain View;",
      " CA; 94043;U.S.A.",
      "TEL;TYPE=VOICE,MSG,WORK:+1-415-937-3419",
      "TEL;TYPE=FAX,WORK:+1-415-528-4164",
      "EMAIL;TYPE=INTERNET:howes@netscape.com",
      "END:vCard",
  }));
  ASSERT_TRUE(cards.ok()) << cards.error().message;
  ASSERT_EQ(cards->size(), 2u);
  const Contact& frank = (*cards)[0].contact;
  EXPECT_EQ((*cards)[0].version, "3.0");
  EXPECT_EQ(frank.formatted_name, "Frank Dawson");
  EXPECT_EQ(frank.organization, "Lotus Development Corporation");
  ASSERT_EQ(frank.addresses.size(), 1u);
  EXPECT_EQ(frank.addresses[0], (PostalAddress{{"work", "postal", "parcel"},
                                               "",
                                               "",
                                               "6544 Battleford Drive",
                                               "Raleigh",
                                               "NC",
                                               "27613-3502",
                                               "U.S.A."}));
  ASSERT_EQ(frank.phones.size(), 2u);
  EXPECT_EQ(frank.phones[0], (TypedValue{"+1-919-676-9515", {"voice", "msg", "work"}, false}));
  EXPECT_EQ(frank.phones[1], (TypedValue{"+1-919-676-9564", {"fax", "work"}, false}));
  // "internet" is 3.0's default for every address and is dropped.
  ASSERT_EQ(frank.emails.size(), 2u);
  EXPECT_EQ(frank.emails[0], (TypedValue{"Frank_Dawson@Lotus.com", {}, true}));
  EXPECT_EQ(frank.emails[1], (TypedValue{"fdawson@earthlink.net", {}, false}));
  EXPECT_EQ(frank.urls.at(0).value, "http://home.earthlink.net/~fdawson");

  const Contact& tim = (*cards)[1].contact;
  EXPECT_EQ(tim.formatted_name, "Tim Howes");
  ASSERT_EQ(tim.addresses.size(), 1u);
  EXPECT_EQ(tim.addresses[0].locality, "Mountain View");
  EXPECT_EQ(tim.addresses[0].region, "CA");
  EXPECT_EQ(tim.addresses[0].postal_code, " 94043");  // as printed; trimmed when compared
  EXPECT_EQ(tim.emails.at(0).value, "howes@netscape.com");
}

// Property examples from RFC 2426 section 3.
TEST(ParseVCardTest, Rfc2426PropertyExamples) {
  const ParsedVCard card = MustParse(Crlf({
      "BEGIN:VCARD",
      "VERSION:3.0",
      "FN:Mr. John Q. Public\\, Esq.",
      "N:Public;John;Quinlan;Mr.;Esq.",
      "NICKNAME:Robbie",
      "BDAY:1996-04-15",
      "TEL;TYPE=work,voice,pref,msg:+1-213-555-1234",
      "EMAIL;TYPE=internet:jqpublic@xyz.dom1.com",
      "TITLE:Director\\, Research and Development",
      "ROLE:Programmer",
      "ORG:ABC\\, Inc.;North American Division;Marketing",
      "CATEGORIES:INTERNET,IETF,INDUSTRY,INFORMATION TECHNOLOGY",
      "NOTE:This fax number is operational 0800 to 1715",
      "  EST\\, Mon-Fri.",
      "PHOTO;VALUE=uri:http://www.abc.com/pub/photos",
      " /jqpublic.gif",
      "PRODID:-//ONLINE DIRECTORY//NONSGML Version 1//EN",
      "REV:1995-10-31T22:27:10Z",
      "UID:19950401-080045-40000F192713-0052",
      "END:VCARD",
  }));
  const Contact& c = card.contact;
  EXPECT_EQ(c.formatted_name, "Mr. John Q. Public, Esq.");
  EXPECT_EQ(c.family_name, "Public");
  EXPECT_EQ(c.given_name, "John");
  EXPECT_EQ(c.additional_names, "Quinlan");
  EXPECT_EQ(c.honorific_prefix, "Mr.");
  EXPECT_EQ(c.honorific_suffix, "Esq.");
  EXPECT_EQ(c.nickname, "Robbie");
  EXPECT_EQ(c.birthday, "1996-04-15");
  EXPECT_EQ(c.phones.at(0), (TypedValue{"+1-213-555-1234", {"work", "voice", "msg"}, true}));
  EXPECT_EQ(c.emails.at(0), (TypedValue{"jqpublic@xyz.dom1.com", {}, false}));
  EXPECT_EQ(c.title, "Director, Research and Development");
  EXPECT_EQ(c.role, "Programmer");
  EXPECT_EQ(c.organization, "ABC, Inc.");
  EXPECT_EQ(c.department, "North American Division, Marketing");
  EXPECT_EQ(c.categories, (Strings{"INTERNET", "IETF", "INDUSTRY", "INFORMATION TECHNOLOGY"}));
  EXPECT_EQ(c.note, "This fax number is operational 0800 to 1715 EST, Mon-Fri.");
  ASSERT_TRUE(c.photo.has_value());
  EXPECT_EQ(c.photo->uri, "http://www.abc.com/pub/photos/jqpublic.gif");
  EXPECT_EQ(c.photo->data, "");
  EXPECT_EQ(card.uid, "19950401-080045-40000F192713-0052");
  EXPECT_EQ(card.Get("PRODID"), "-//ONLINE DIRECTORY//NONSGML Version 1//EN");
  EXPECT_EQ(card.Get("REV"), "1995-10-31T22:27:10Z");
  EXPECT_EQ(card.Get("UID"), "");  // UID has its own field
}

// Property examples from RFC 6350 section 6.
TEST(ParseVCardTest, Rfc6350PropertyExamples) {
  const std::string jpeg =
      "0\x82\x02j0\x82\x01\xd3\xa0\x03\x02\x01\x02\x02\x02\x04"
      "E0\r";
  const ParsedVCard card = MustParse(Crlf({
      "BEGIN:VCARD",
      "VERSION:4.0",
      "FN:J. Doe",
      "NICKNAME:Jim,Jimmie",
      "NICKNAME;TYPE=work:Boss",
      "TEL;VALUE=uri;PREF=1;TYPE=\"voice,home\":tel:+1-555-555-5555;ext=5555",
      "TEL;VALUE=uri;TYPE=home:tel:+33-01-23-45-67",
      "EMAIL;TYPE=work:jqpublic@xyz.example.com",
      "EMAIL;PREF=1:jane_doe@example.com",
      "PHOTO:data:image/jpeg;base64,MIICajCCAdOgAwIBAgICBEUwDQ==",
      "BDAY;VALUE=text:circa 1800",
      "CATEGORIES:TRAVEL AGENT",
      "X-ROSTER-RULE:work",
      "END:VCARD",
  }));
  const Contact& c = card.contact;
  EXPECT_EQ(c.nickname, "Jim,Jimmie,Boss");
  ASSERT_EQ(c.phones.size(), 2u);
  EXPECT_EQ(c.phones[0], (TypedValue{"+1-555-555-5555;ext=5555", {"voice", "home"}, true}));
  EXPECT_EQ(c.phones[1], (TypedValue{"+33-01-23-45-67", {"home"}, false}));
  EXPECT_EQ(c.emails.at(1), (TypedValue{"jane_doe@example.com", {}, true}));
  ASSERT_TRUE(c.photo.has_value());
  EXPECT_EQ(c.photo->media_type, "image/jpeg");
  std::string expected;
  ASSERT_TRUE(Base64Decode("MIICajCCAdOgAwIBAgICBEUwDQ==", &expected));
  EXPECT_EQ(c.photo->data, expected);
  EXPECT_EQ(c.birthday, "circa 1800");
  EXPECT_EQ(c.categories, Strings{"TRAVEL AGENT"});
  EXPECT_EQ(card.Get("X-ROSTER-RULE"), "work");
}

// ---------------------------------------------------------------------------
// Syntax details.

TEST(ParseVCardTest, Vcard30EmbeddedPhoto) {
  const ParsedVCard card = MustParse(
      "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:P\r\n"
      "PHOTO;ENCODING=b;TYPE=JPEG:/9j/4AAQ\r\n SkZJRg==\r\nEND:VCARD\r\n");
  ASSERT_TRUE(card.contact.photo.has_value());
  EXPECT_EQ(card.contact.photo->media_type, "image/jpeg");
  EXPECT_EQ(card.contact.photo->data, std::string("\xff\xd8\xff\xe0\x00\x10JFIF", 10));
}

TEST(ParseVCardTest, Vcard21BareParameters) {
  const ParsedVCard card = MustParse(
      "BEGIN:VCARD\nVERSION:2.1\nN:Doe;John\nTEL;WORK;VOICE;PREF:+1 555\n"
      "PHOTO;JPEG;BASE64:/9j/\nEND:VCARD\n");
  EXPECT_EQ(card.version, "2.1");
  EXPECT_EQ(card.contact.phones.at(0), (TypedValue{"+1 555", {"work", "voice"}, true}));
  ASSERT_TRUE(card.contact.photo.has_value());
  EXPECT_EQ(card.contact.photo->media_type, "image/jpeg");
  EXPECT_EQ(card.contact.photo->data, "\xff\xd8\xff");
  EXPECT_EQ(card.contact.DisplayName(), "John Doe");
}

TEST(ParseVCardTest, UnescapesText) {
  const ParsedVCard card = MustParse(
      "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:A\r\n"
      "NOTE:one\\ntwo\\Nthree\\, four\\; five\\\\six\\:seven\\qeight\\\r\n"
      "ADR:;;1 Main St\\nFloor 2;Town\\, Shire;;;\r\n"
      "CATEGORIES:a\\,b,c\\;d,\\\\\r\nEND:VCARD\r\n");
  EXPECT_EQ(card.contact.note, "one\ntwo\nthree, four; five\\six:seven\\qeight\\");
  EXPECT_EQ(card.contact.addresses.at(0).street, "1 Main St\nFloor 2");
  EXPECT_EQ(card.contact.addresses.at(0).locality, "Town, Shire");
  EXPECT_EQ(card.contact.categories, (Strings{"a,b", "c;d", "\\"}));
}

TEST(ParseVCardTest, UnfoldsSpaceTabAndBareLf) {
  const ParsedVCard card = MustParse(
      "BEGIN:VCARD\nVERSION:3.0\r\nFN:Jo\r\n hn\n\tSmith\r\nNOTE:ab\\\r\n nc\r\n"
      "TITLE:x\r\n  y\r\nEND:VCARD");
  EXPECT_EQ(card.contact.formatted_name, "JohnSmith");
  EXPECT_EQ(card.contact.note, "ab\nc");  // a fold inside an escape sequence
  EXPECT_EQ(card.contact.title, "x y");   // only the first space is the fold
}

TEST(ParseVCardTest, UnfoldsInsideUtf8Sequence) {
  // Some writers fold inside a multi-byte character; the unfolded line is whole.
  const ParsedVCard card =
      MustParse("BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Zo\xc3\r\n \xab\r\nEND:VCARD\r\n");
  EXPECT_EQ(card.contact.formatted_name, "Zo\xc3\xab");
}

TEST(ParseVCardTest, NonAsciiPassesThrough) {
  const ParsedVCard card = MustParse(
      "\xEF\xBB\xBF"
      "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Jos\xc3\xa9 \xe5\xb1\xb1\xe7\x94\xb0 \xf0\x9f\x98\x80\r\n"
      "END:VCARD\r\n");
  EXPECT_EQ(card.contact.formatted_name, "Jos\xc3\xa9 \xe5\xb1\xb1\xe7\x94\xb0 \xf0\x9f\x98\x80");
}

TEST(ParseVCardTest, GroupsAndUnknownProperties) {
  const ParsedVCard card = MustParse(Crlf({
      "BEGIN:VCARD",
      "VERSION:3.0",
      "FN:A",
      "item1.EMAIL;type=INTERNET;type=pref:a@example.org",
      "item1.X-ABLabel:_$!<Other>!$_",
      "x-roster-key;X-P=\"a:b;c\",d:k\\,1",
      "END:VCARD",
  }));
  EXPECT_EQ(card.contact.emails.at(0), (TypedValue{"a@example.org", {}, true}));
  const VCardProperty* label = FindOther(card, "X-ABLABEL");
  ASSERT_NE(label, nullptr);
  EXPECT_EQ(label->group, "item1");
  EXPECT_EQ(label->value, "_$!<Other>!$_");
  const VCardProperty* key = FindOther(card, "X-ROSTER-KEY");
  ASSERT_NE(key, nullptr);
  EXPECT_EQ(key->group, "");
  EXPECT_EQ(key->value, "k,1");
  ASSERT_EQ(key->params.size(), 1u);
  EXPECT_EQ(key->params[0].first, "X-P");
  EXPECT_EQ(key->params[0].second, (Strings{"a:b;c", "d"}));
}

TEST(ParseVCardTest, ParameterCaretEncoding) {
  const ParsedVCard card = MustParse(
      "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:A\r\n"
      "ADR;LABEL=\"1 Main^nTown ^'Old^' ^^\":;;1 Main;Town;;;\r\n"
      "EMAIL;TYPE=\"x^'q\":a@example.org\r\nEND:VCARD\r\n");
  EXPECT_EQ(card.contact.emails.at(0).types, Strings{"x\"q"});
}

TEST(ParseVCardTest, DuplicateSingleValuedPropertiesKeepTheFirst) {
  const ParsedVCard card = MustParse(
      "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:First\r\nFN:Second\r\nNOTE:\r\nNOTE:real\r\n"
      "N:;;;;\r\nN:Doe;Jo;;;\r\nN:Roe;Al;;;\r\nORG:\r\nORG:Acme\r\nORG:Other\r\n"
      "PHOTO;ENCODING=b:\r\n"
      "PHOTO:http://a.example/1.png\r\nPHOTO:http://a.example/2.png\r\nEND:VCARD\r\n");
  EXPECT_EQ(card.contact.formatted_name, "First");
  EXPECT_EQ(card.contact.note, "real");
  EXPECT_EQ(card.contact.family_name, "Doe");
  EXPECT_EQ(card.contact.organization, "Acme");
  EXPECT_EQ(card.Get("N"), "Roe;Al;;;");
  EXPECT_EQ(card.Get("ORG"), "Other");
  EXPECT_EQ(card.contact.photo->uri, "http://a.example/1.png");
  EXPECT_EQ(card.Get("FN"), "Second");
  EXPECT_EQ(card.Get("PHOTO"), "http://a.example/2.png");
}

TEST(ParseVCardTest, UndecodablePhotoIsKeptAsOther) {
  const ParsedVCard card = MustParse(
      "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:A\r\nPHOTO;ENCODING=b;TYPE=PNG:not base64!\r\n"
      "END:VCARD\r\n");
  EXPECT_FALSE(card.contact.photo.has_value());
  EXPECT_EQ(card.Get("PHOTO"), "not base64!");
}

TEST(ParseVCardTest, PhotoUriWithMediaType) {
  const ParsedVCard card = MustParse(
      "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:A\r\n"
      "PHOTO;MEDIATYPE=image/gif:http://www.example.com/dir_photos/my_photo.gif\r\n"
      "END:VCARD\r\n");
  EXPECT_EQ(card.contact.photo,
            (Photo{"image/gif", "", "http://www.example.com/dir_photos/my_photo.gif"}));
}

// ---------------------------------------------------------------------------
// Errors.

TEST(ParseVCardErrorTest, NamesTheLine) {
  EXPECT_EQ(ParseError("BEGIN:VCARD\r\nVERSION:4.0\r\nFN A\r\nEND:VCARD\r\n"),
            "vCard line 3: expected ':' after the name and parameters of FN");
  EXPECT_EQ(ParseError("VERSION:4.0\r\n"), "vCard line 1: expected BEGIN:VCARD");
  EXPECT_EQ(ParseError("BEGIN:VCARD\r\nFN:A\r\n"), "vCard line 1: vCard has no END:VCARD");
  EXPECT_EQ(ParseError("\r\nBEGIN:VCARD\r\nFN:A\r\nBEGIN:VCARD\r\n"),
            "vCard line 4: BEGIN inside a vCard that has not ended");
  EXPECT_EQ(ParseError("BEGIN:VCARD\r\nEND:VCALENDAR\r\n"), "vCard line 2: expected END:VCARD");
  EXPECT_EQ(ParseError(" FN:A\r\n"),
            "vCard line 1: continuation line without a property before it");
  EXPECT_EQ(ParseError("BEGIN:VCARD\r\n:A\r\nEND:VCARD\r\n"),
            "vCard line 2: expected a property name");
  EXPECT_EQ(ParseError("BEGIN:VCARD\r\nFN;TYPE=\"a:A\r\nEND:VCARD\r\n"),
            "vCard line 2: unterminated quoted parameter value in FN");
  EXPECT_EQ(ParseError("BEGIN:VCARD\r\nFN;=x:A\r\nEND:VCARD\r\n"),
            "vCard line 2: malformed parameter in FN");
  EXPECT_EQ(ParseError("BEGIN:VCARD\r\nFN;X=\"a\"b:A\r\nEND:VCARD\r\n"),
            "vCard line 2: malformed parameter in FN");
  EXPECT_EQ(ParseError("BEGIN:VCARD\r\nFN:A\r\nEND:VCARD\r\ngarbage\r\n"),
            "vCard line 4: expected BEGIN:VCARD");
}

TEST(ParseVCardErrorTest, RejectsInvalidUtf8) {
  for (std::string_view bad :
       {"\xff", "\xc3", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe0\x80\xaf", "a\x80"}) {
    const std::string text = "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:A\r\nNOTE:x" + std::string(bad) +
                             "\r\n y\r\nEND:VCARD\r\n";
    EXPECT_EQ(ParseError(text), "vCard line 4: invalid UTF-8") << HexEncode(bad);
  }
}

TEST(ParseVCardErrorTest, RejectsOverlongProperty) {
  const std::string megabyte(1024 * 1024, 'a');
  EXPECT_EQ(ParseError("BEGIN:VCARD\r\nVERSION:4.0\r\nNOTE:" + megabyte + "\r\nEND:VCARD\r\n"),
            "vCard line 3: property longer than 524288 bytes");

  // The same limit holds when the length arrives through folding.
  std::string folded = "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:A\r\nNOTE:";
  for (int i = 0; i < 8000; ++i) folded += std::string(74, 'b') + "\r\n ";
  folded += "\r\nEND:VCARD\r\n";
  EXPECT_EQ(ParseError(folded), "vCard line 4: property longer than 524288 bytes");

  // Exactly at the limit is fine.
  const std::string at_limit =
      "BEGIN:VCARD\r\nNOTE:" + std::string(kMaxVCardLineBytes - 5, 'c') + "\r\nEND:VCARD\r\n";
  EXPECT_TRUE(ParseVCard(at_limit).ok());
}

TEST(ParseVCardErrorTest, RejectsOversizedInput) {
  const std::string card = "BEGIN:VCARD\r\nFN:A\r\nEND:VCARD\r\n";
  std::string many;
  while (many.size() <= kMaxVCardBytes) many += card;
  EXPECT_EQ(ParseError(many), "vCard input larger than 8388608 bytes");
}

TEST(ParseVCardErrorTest, ParseVCardWantsExactlyOne) {
  const std::string card = "BEGIN:VCARD\r\nFN:A\r\nEND:VCARD\r\n";
  Result<ParsedVCard> none = ParseVCard("\r\n\r\n");
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().message, "vCard line 1: no BEGIN:VCARD found");
  Result<ParsedVCard> two = ParseVCard(card + card);
  ASSERT_FALSE(two.ok());
  EXPECT_EQ(two.error().message, "vCard line 4: a second vCard where one was expected");
}

// Inputs built to make a careless parser quadratic; each must take moments.
TEST(ParseVCardErrorTest, HostileInputsStayFast) {
  std::string tels = "BEGIN:VCARD\r\nTEL:";
  while (tels.size() < kMaxVCardLineBytes - 16) tels += "tel: ";
  tels += "1\r\nEND:VCARD\r\n";
  const ParsedVCard tel = MustParse(tels);
  EXPECT_EQ(tel.contact.phones.at(0).value, "1");

  std::string types = "BEGIN:VCARD\r\nEMAIL;TYPE=";
  for (int i = 0; types.size() < kMaxVCardLineBytes - 64; ++i) {
    types += std::to_string(i) + ",";
  }
  types += "x:a@example.org\r\nEND:VCARD\r\n";
  const ParsedVCard typed = MustParse(types);
  EXPECT_GT(typed.contact.emails.at(0).types.size(), 50000u);
  const std::string written = WriteVCard(typed.contact, VCardVersion::k40, "");
  EXPECT_EQ(ContentHash(MustParse(written).contact), ContentHash(typed.contact));

  std::string lines = "BEGIN:VCARD\r\n";
  while (lines.size() < kMaxVCardBytes / 4) lines += "CATEGORIES:a,b\r\nX-A;P=\"q\":\\,\r\n";
  lines += "END:VCARD\r\n";
  EXPECT_TRUE(ParseVCard(lines).ok());
}

TEST(ParseVCardsTest, ReadsManyCardsAndNone) {
  std::string text;
  for (int i = 0; i < 50; ++i) {
    text += "BEGIN:VCARD\nVERSION:3.0\nFN:Person " + std::to_string(i) + "\nEND:VCARD\n\n";
  }
  Result<std::vector<ParsedVCard>> cards = ParseVCards(text);
  ASSERT_TRUE(cards.ok()) << cards.error().message;
  ASSERT_EQ(cards->size(), 50u);
  EXPECT_EQ((*cards)[49].contact.formatted_name, "Person 49");

  Result<std::vector<ParsedVCard>> empty = ParseVCards("");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
}

// ---------------------------------------------------------------------------
// Writing.

Strings PhysicalLines(const std::string& text) {
  Strings lines;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t end = text.find("\r\n", pos);
    EXPECT_NE(end, std::string::npos) << "text does not end with CRLF";
    if (end == std::string::npos) break;
    lines.push_back(text.substr(pos, end - pos));
    pos = end + 2;
  }
  return lines;
}

TEST(WriteVCardTest, Vcard30Layout) {
  Contact c;
  c.given_name = "Ada";
  c.family_name = "King";
  c.emails = {{"ada@example.org", {"work"}, true}};
  c.phones = {{"+44 20 7946 0000", {"work", "voice"}, false}};
  c.photo = Photo{"image/jpeg", "\xff\xd8\xff", ""};
  const std::string text =
      WriteVCard(c, VCardVersion::k30, "uid-1", {{"X-ROSTER-RULE", "friends, work"}});
  EXPECT_EQ(text, Crlf({
                      "BEGIN:VCARD",
                      "VERSION:3.0",
                      "FN:Ada King",
                      "N:King;Ada;;;",
                      "EMAIL;TYPE=work,pref:ada@example.org",
                      "TEL;TYPE=work,voice:+44 20 7946 0000",
                      "PHOTO;ENCODING=b;TYPE=JPEG:/9j/",
                      "UID:uid-1",
                      "X-ROSTER-RULE:friends\\, work",
                      "END:VCARD",
                  }));
}

TEST(WriteVCardTest, Vcard40Layout) {
  Contact c;
  c.formatted_name = "Ada";
  c.organization = "Engines; Ltd";
  c.department = "R&D";
  c.emails = {{"ada@example.org", {"work"}, true}};
  c.phones = {{"tel:+44 20 7946 0000", {"Work", "VOICE"}, false}};
  c.addresses = {{{"home"}, "", "", "1 Row, Flat 2", "London", "", "N1", "UK"}};
  c.urls = {{"https://example.org/a,b", {}, false}};
  c.birthday = "--12-10";
  c.note = "Line one\r\nLine two, with; punctuation\\";
  c.categories = {"a,b", "c"};
  c.photo = Photo{"image/png", "\x89PNG", ""};
  const std::string text = WriteVCard(c, VCardVersion::k40, "urn:uuid:1");
  EXPECT_EQ(text, Crlf({
                      "BEGIN:VCARD",
                      "VERSION:4.0",
                      "FN:Ada",
                      "ORG:Engines\\; Ltd;R&D",
                      "EMAIL;TYPE=work;PREF=1:ada@example.org",
                      "TEL;TYPE=work,voice:+44 20 7946 0000",
                      "ADR;TYPE=home:;;1 Row\\, Flat 2;London;;N1;UK",
                      "URL:https://example.org/a,b",
                      "BDAY:--12-10",
                      "NOTE:Line one\\nLine two\\, with\\; punctuation\\\\",
                      "CATEGORIES:a\\,b,c",
                      "PHOTO:data:image/png;base64,iVBORw==",
                      "UID:urn:uuid:1",
                      "END:VCARD",
                  }));
}

// Outlook's X-MS-MANAGER carries the manager; the office is ADR's extended
// component of the work address, where phones show it.
TEST(WriteVCardTest, ManagerAndOfficeInBothVersions) {
  Contact c;
  c.formatted_name = "Ada";
  ASSERT_TRUE(SetContactField(c, "manager", "Charles Babbage; FRS"));
  ASSERT_TRUE(SetContactField(c, "office", "Room 4, Floor 2"));
  for (VCardVersion v : {VCardVersion::k30, VCardVersion::k40}) {
    const std::string text = WriteVCard(c, v, "", {{"X-MS-MANAGER", "a second copy"}});
    EXPECT_NE(text.find("\r\nX-MS-MANAGER:Charles Babbage\\; FRS\r\n"), std::string::npos) << text;
    EXPECT_NE(text.find(":;Room 4\\, Floor 2;;;;;\r\n"), std::string::npos) << text;
    EXPECT_EQ(text.find("a second copy"), std::string::npos) << text;
    const ParsedVCard back = MustParse(text);
    EXPECT_EQ(back.contact, c);
    EXPECT_EQ(GetContactField(back.contact, "manager"), Strings{"Charles Babbage; FRS"});
    EXPECT_EQ(GetContactField(back.contact, "office"), Strings{"Room 4, Floor 2"});
    EXPECT_EQ(FindOther(back, "X-MS-MANAGER"), nullptr);
  }
}

TEST(ParseVCardTest, ReadsOutlookManagerOnce) {
  const ParsedVCard card = MustParse(Crlf({
      "BEGIN:VCARD",
      "VERSION:3.0",
      "FN:Ada",
      "x-ms-manager:Charles Babbage",
      "X-MS-MANAGER:Someone Else",
      "ADR;TYPE=WORK:;Building 7;1 Row;London;;;",
      "END:VCARD",
  }));
  EXPECT_EQ(card.contact.manager, "Charles Babbage");
  EXPECT_EQ(GetContactField(card.contact, "office"), Strings{"Building 7"});
  const VCardProperty* second = FindOther(card, "X-MS-MANAGER");
  ASSERT_NE(second, nullptr);
  EXPECT_EQ(second->value, "Someone Else");
}

TEST(WriteVCardTest, PhotoByUri) {
  Contact c;
  c.formatted_name = "A";
  c.photo = Photo{"image/gif", "", "http://example.com/a.gif"};
  EXPECT_NE(WriteVCard(c, VCardVersion::k30, "")
                .find("\r\nPHOTO;VALUE=uri;TYPE=image/gif:http://example.com/a.gif\r\n"),
            std::string::npos);
  EXPECT_NE(WriteVCard(c, VCardVersion::k40, "")
                .find("\r\nPHOTO;MEDIATYPE=image/gif:http://example.com/a.gif\r\n"),
            std::string::npos);
}

TEST(WriteVCardTest, FreeFormBirthdayIsMarkedText) {
  Contact c;
  c.birthday = "circa 1800";
  EXPECT_NE(WriteVCard(c, VCardVersion::k40, "").find("\r\nBDAY;VALUE=text:circa 1800\r\n"),
            std::string::npos);
  EXPECT_NE(WriteVCard(c, VCardVersion::k30, "").find("\r\nBDAY:circa 1800\r\n"),
            std::string::npos);
}

TEST(WriteVCardTest, SkipsExtrasThatWouldBreakTheCard) {
  Contact c;
  c.formatted_name = "A";
  const std::string text = WriteVCard(c, VCardVersion::k40, "",
                                      {{"END", "VCARD"},
                                       {"NOTE", "sneaky"},
                                       {"BAD NAME", "x"},
                                       {"", "x"},
                                       {"x-kept", "yes"},
                                       {"PRODID", "-//x//EN"}});
  EXPECT_EQ(text, Crlf({"BEGIN:VCARD", "VERSION:4.0", "FN:A", "X-KEPT:yes", "PRODID:-//x//EN",
                        "END:VCARD"}));
}

TEST(WriteVCardTest, FoldsAt75OctetsWithoutSplittingUtf8) {
  Contact c;
  c.formatted_name = "A";
  // Mixed widths so that sequences straddle every possible fold position.
  for (int i = 0; i < 200; ++i) {
    c.note += std::string(1 + i % 3, 'x') + "\xc3\xa9" + "\xe5\xb1\xb1" + "\xf0\x9f\x98\x80";
  }
  c.photo = Photo{"image/jpeg", std::string(3000, '\x7f'), ""};
  for (VCardVersion v : {VCardVersion::k30, VCardVersion::k40}) {
    const std::string text = WriteVCard(c, v, "");
    const Strings lines = PhysicalLines(text);
    ASSERT_GT(lines.size(), 50u);
    for (size_t i = 0; i < lines.size(); ++i) {
      EXPECT_LE(lines[i].size(), 75u) << i;
      EXPECT_FALSE(lines[i].empty());
      const size_t body = (lines[i][0] == ' ') ? 1 : 0;
      if (lines[i].size() > body) {
        EXPECT_NE(static_cast<unsigned char>(lines[i][body]) & 0xC0, 0x80) << "line " << i;
      }
    }
    const ParsedVCard back = MustParse(text);
    EXPECT_EQ(back.contact.note, c.note);
    EXPECT_EQ(back.contact.photo, c.photo);
  }
}

TEST(WriteVCardTest, FoldsLongLinesThatReadBackExactly) {
  Contact c;
  c.note = std::string(74, 'a') + " " + std::string(80, 'b') + "  " + std::string(10, 'c');
  for (VCardVersion v : {VCardVersion::k30, VCardVersion::k40}) {
    const ParsedVCard back = MustParse(WriteVCard(c, v, ""));
    EXPECT_EQ(back.contact.note, c.note);
  }
}

// ---------------------------------------------------------------------------
// The round trip: writing and reading back never changes the content hash.

// A small deterministic generator, so a failure names a reproducible seed.
class Gen {
 public:
  explicit Gen(uint64_t seed) : state_(seed * 6364136223846793005ULL + 1442695040888963407ULL) {}
  uint32_t Next() {
    state_ = state_ * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<uint32_t>(state_ >> 33);
  }
  bool Chance(int percent) { return static_cast<int>(Next() % 100) < percent; }
  std::string Text(size_t max_len) {
    static const std::vector<std::string> kPieces = {
        "a", "Z", "0", " ", "  ", ",",    ";",    ":", "\\", "\\n",  "\n", "\r\n", "\r", "\t", "\"",
        "^", "=", ".", "é", "ß",  "日本", "🙂", "ñ", "Ω",  "tel:", "x-", "'",    "<",  "&"};
    std::string out;
    const size_t n = Next() % (max_len + 1);
    for (size_t i = 0; i < n; ++i) out += kPieces[Next() % kPieces.size()];
    return out;
  }
  Strings Types() {
    static const Strings kTypes = {"work", "HOME",     "cell",     "voice",   "fax",
                                   "pref", "internet", "x-custom", " Pager ", "work,voice",
                                   "a b",  "q\"uote",  "sem;i",    "col:on",  ""};
    Strings out;
    const size_t n = Next() % 4;
    for (size_t i = 0; i < n; ++i) out.push_back(kTypes[Next() % kTypes.size()]);
    return out;
  }
  std::vector<TypedValue> Typed(size_t max) {
    std::vector<TypedValue> out;
    const size_t n = Next() % (max + 1);
    for (size_t i = 0; i < n; ++i) out.push_back({Text(12), Types(), Chance(30)});
    return out;
  }

 private:
  uint64_t state_;
};

Contact RandomContact(Gen& g) {
  Contact c;
  auto maybe = [&](size_t len) { return g.Chance(60) ? g.Text(len) : std::string(); };
  c.formatted_name = maybe(8);
  c.family_name = maybe(6);
  c.given_name = maybe(6);
  c.additional_names = maybe(6);
  c.honorific_prefix = maybe(3);
  c.honorific_suffix = maybe(3);
  c.nickname = maybe(6);
  c.organization = maybe(8);
  c.department = maybe(8);
  c.title = maybe(8);
  c.role = maybe(8);
  c.manager = maybe(8);
  c.emails = g.Typed(3);
  c.phones = g.Typed(3);
  c.urls = g.Typed(2);
  const size_t addresses = g.Next() % 3;
  for (size_t i = 0; i < addresses; ++i) {
    c.addresses.push_back(PostalAddress{g.Types(), maybe(4), maybe(4), maybe(10), maybe(6),
                                        maybe(4), maybe(4), maybe(6)});
  }
  c.note = g.Chance(30) ? g.Text(400) : maybe(20);
  c.birthday = g.Chance(50) ? "1980-04-02" : maybe(5);
  const size_t categories = g.Next() % 4;
  for (size_t i = 0; i < categories; ++i) c.categories.push_back(g.Text(6));
  if (g.Chance(40)) {
    Photo p;
    static const Strings kMedia = {"image/jpeg",    "image/png",      "PNG",        "",
                                   "image/svg+xml", "Image/GIF; q=1", "weird type", "a/b/c"};
    p.media_type = kMedia[g.Next() % kMedia.size()];
    if (g.Chance(70)) {
      const size_t n = g.Next() % 2000;
      for (size_t i = 0; i < n; ++i) p.data.push_back(static_cast<char>(g.Next()));
    } else {
      p.uri = "https://example.org/" + g.Text(10);
    }
    c.photo = p;
  }
  return c;
}

TEST(RoundTripTest, ContentHashSurvivesWriteAndRead) {
  for (uint64_t seed = 0; seed < 1500; ++seed) {
    Gen g(seed);
    const Contact c = RandomContact(g);
    for (VCardVersion v : {VCardVersion::k30, VCardVersion::k40}) {
      const std::string text = WriteVCard(c, v, "uid-" + std::to_string(seed));
      Result<ParsedVCard> back = ParseVCard(text);
      ASSERT_TRUE(back.ok()) << "seed " << seed << ": " << back.error().message << "\n" << text;
      ASSERT_EQ(CanonicalForm(back->contact), CanonicalForm(c))
          << "seed " << seed << " version " << (v == VCardVersion::k30 ? "3.0" : "4.0") << "\n"
          << text;
      EXPECT_EQ(back->uid, "uid-" + std::to_string(seed));
      // A second trip writes the same bytes: the writer is a fixed point.
      EXPECT_EQ(WriteVCard(back->contact, v, back->uid), text) << "seed " << seed;
    }
  }
}

TEST(RoundTripTest, RealisticContactsInBothVersions) {
  Contact c;
  c.formatted_name = "Zoë Ångström-Łukasiewicz";
  c.given_name = "Zoë";
  c.family_name = "Ångström-Łukasiewicz";
  c.organization = "Société Générale, S.A.";
  c.department = "Équipe «Données»; Paris";
  c.title = "Directrice";
  c.manager = "Émile Durand, Jr.";
  c.emails = {{"zoe@example.fr", {"work"}, true}, {"z@example.jp", {"home"}, false}};
  c.phones = {{"+33 1 23 45 67 89", {"work", "voice"}, false}, {"+81 3-1234-5678", {"cell"}, true}};
  c.addresses = {
      {{"work"}, "", "Bâtiment B", "29 Bd Haussmann", "Paris", "Île-de-France", "75009", "France"},
      {{"home"}, "", "", "東京都千代田区1-1", "千代田区", "東京都", "100-0001", "日本"}};
  c.urls = {{"https://example.fr/équipe?a=1,2;b=3", {"work"}, false}};
  for (int i = 0; i < 40; ++i) {
    if (i > 0) c.note += "\n";
    c.note += "Paragraph " + std::to_string(i) + ": commas, semicolons; colons: back\\slashes.";
  }
  c.birthday = "1985-07-14";
  c.categories = {"Clients", "Paris, France", "VIP;Gold"};
  std::string jpeg = "\xff\xd8\xff\xe0";
  for (int i = 0; i < 20000; ++i) jpeg.push_back(static_cast<char>(i * 7));
  c.photo = Photo{"image/jpeg", jpeg, ""};

  const std::string hash = ContentHash(c);
  for (VCardVersion v : {VCardVersion::k30, VCardVersion::k40}) {
    const ParsedVCard back = MustParse(WriteVCard(c, v, "u"));
    EXPECT_EQ(ContentHash(back.contact), hash);
    EXPECT_EQ(back.contact, c);  // nothing to normalise here: exactly equal
  }
}

TEST(RoundTripTest, RfcCardsKeepTheirHashAcrossVersions) {
  const std::string rfc = Crlf({
      "BEGIN:vCard",
      "VERSION:3.0",
      "FN:Frank Dawson",
      "ORG:Lotus Development Corporation",
      "ADR;TYPE=WORK,POSTAL,PARCEL:;;6544 Battleford Drive",
      " ;Raleigh;NC;27613-3502;U.S.A.",
      "TEL;TYPE=VOICE,MSG,WORK:+1-919-676-9515",
      "EMAIL;TYPE=INTERNET,PREF:Frank_Dawson@Lotus.com",
      "END:vCard",
  });
  const ParsedVCard first = MustParse(rfc);
  const std::string hash = ContentHash(first.contact);
  const ParsedVCard as40 = MustParse(WriteVCard(first.contact, VCardVersion::k40, ""));
  const ParsedVCard as30 = MustParse(WriteVCard(as40.contact, VCardVersion::k30, ""));
  EXPECT_EQ(ContentHash(as40.contact), hash);
  EXPECT_EQ(ContentHash(as30.contact), hash);
}

}  // namespace
}  // namespace roster
