// Every property roster sends to Graph or reads from it must exist on
// microsoft.graph.contact in Microsoft's own v1.0 schema, with the type its
// JSON has: the check runs on real bodies, not on a list kept by hand.
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <pugixml.hpp>
#include <regex>
#include <set>

#include "connectors/graph/contact_json.h"
#include "connectors/graph/graph_props.h"
#include "connectors/graph/projection.h"
#include "connectors/graph/test_contacts.h"

namespace roster {
namespace {

using nlohmann::json;

struct CsdlProperty {
  std::string type;  // "Edm.String", "Collection(graph.emailAddress)", ...
  bool nullable = true;
};

// The entity and complex types of the CSDL, by name without namespace.
class Csdl {
 public:
  bool Load(const char* path) {
    if (!doc_.load_file(path)) return false;
    pugi::xml_node schema =
        doc_.find_node([](pugi::xml_node n) { return std::string_view(n.name()) == "Schema"; });
    for (pugi::xml_node t : schema.children()) {
      const std::string_view kind = t.name();
      if (kind != "EntityType" && kind != "ComplexType") continue;
      const std::string name = t.attribute("Name").value();
      if (const char* base = t.attribute("BaseType").as_string(nullptr)) bases_[name] = Local(base);
      for (pugi::xml_node p : t.children()) {
        const std::string_view tag = p.name();
        if (tag != "Property" && tag != "NavigationProperty") continue;
        types_[name][p.attribute("Name").value()] = {
            p.attribute("Type").value(),
            std::string_view(p.attribute("Nullable").value()) != "false"};
      }
    }
    return !types_.empty();
  }

  // The property `name` of `type` or of a type it derives from.
  const CsdlProperty* Find(std::string type, const std::string& name) const {
    for (int depth = 0; depth < 10; ++depth) {
      if (auto t = types_.find(type); t != types_.end()) {
        if (auto p = t->second.find(name); p != t->second.end()) return &p->second;
      }
      auto b = bases_.find(type);
      if (b == bases_.end()) return nullptr;
      type = b->second;
    }
    return nullptr;
  }

  static std::string Local(std::string_view qualified) {
    for (std::string_view ns : {"graph.", "microsoft.graph."}) {
      if (qualified.starts_with(ns)) return std::string(qualified.substr(ns.size()));
    }
    return std::string(qualified);
  }

 private:
  pugi::xml_document doc_;
  std::map<std::string, std::map<std::string, CsdlProperty>> types_;
  std::map<std::string, std::string> bases_;
};

const Csdl& Schema() {
  static const Csdl* csdl = [] {
    auto* c = new Csdl;
    if (!c->Load(ROSTER_GRAPH_CSDL)) {
      ADD_FAILURE() << "cannot read the Graph CSDL at " << ROSTER_GRAPH_CSDL
                    << " (set ROSTER_GRAPH_CSDL)";
    }
    return c;
  }();
  return *csdl;
}

// Checks `v` against the CSDL type `type`; `path` names it in failures.
void CheckValue(const std::string& type, const json& v, const std::string& path) {
  static const std::regex kDateTimeOffset(
      R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2}))");
  if (type.starts_with("Collection(")) {
    ASSERT_TRUE(v.is_array()) << path << " should be " << type;
    const std::string inner = type.substr(11, type.size() - 12);
    for (size_t i = 0; i < v.size(); ++i) {
      CheckValue(inner, v[i], path + "[" + std::to_string(i) + "]");
    }
  } else if (type == "Edm.String") {
    EXPECT_TRUE(v.is_string()) << path << " should be a string: " << v;
  } else if (type == "Edm.DateTimeOffset") {
    ASSERT_TRUE(v.is_string()) << path;
    EXPECT_TRUE(std::regex_match(v.get<std::string>(), kDateTimeOffset)) << path << ": " << v;
  } else {
    ASSERT_TRUE(type.starts_with("graph.")) << path << ": type " << type << " is not checked";
    ASSERT_TRUE(v.is_object()) << path << " should be a " << type;
    for (const auto& [name, member] : v.items()) {
      const CsdlProperty* p = Schema().Find(Csdl::Local(type), name);
      ASSERT_NE(p, nullptr) << path << "." << name << " is not a property of " << type;
      if (member.is_null()) {
        EXPECT_TRUE(p->nullable) << path << "." << name << " is not nullable";
      } else {
        CheckValue(p->type, member, path + "." + name);
      }
    }
  }
}

void CheckContact(const std::string& body) {
  CheckValue("graph.contact", json::parse(body), "contact");
}

const std::string kMarkerId = "String {9c1f6c52-3a5e-4a55-9b1f-6e1d0e8a2b41} Name roster";

TEST(GraphCsdl, TheSchemaIsThere) {
  const CsdlProperty* p = Schema().Find("contact", "categories");  // from outlookItem
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->type, "Collection(Edm.String)");
  ASSERT_NE(Schema().Find("contact", "id"), nullptr);  // from entity
  EXPECT_EQ(Schema().Find("contact", "noSuchProperty"), nullptr);
}

TEST(GraphCsdl, EveryPropertyACreateSendsIsOnContact) {
  const ManagedTag tag{"gal", "k"};
  const std::string body = GraphContactBody(graph_test::Everything(), &tag, kMarkerId);
  CheckContact(body);
  // The contact above sets every property roster can send.
  std::set<std::string> sent, all = {"singleValueExtendedProperties"};
  const json parsed = json::parse(body);
  for (const auto& [name, v] : parsed.items()) sent.insert(name);
  for (const graph_detail::Property& p : graph_detail::Properties())
    all.insert(std::string(p.name));
  EXPECT_EQ(sent, all);
  graph_test::RandomContacts random(9);
  for (int i = 0; i < 200; ++i) CheckContact(GraphContactBody(random.Next(), &tag, kMarkerId));
}

TEST(GraphCsdl, EveryPropertyAPatchSendsIsOnContact) {
  const Contact full = ProjectGraphContact(graph_test::Everything());
  Contact changed = full;
  changed.addresses[0].street.clear();
  changed.given_name = "Annabel";
  const ManagedTag a{"gal", "k"}, b{"gal", "k2"};
  const std::string clears = GraphContactPatch(full, Contact{}, nullptr, nullptr, kMarkerId);
  EXPECT_GE(json::parse(clears).size(), graph_detail::Properties().size() - 1);
  CheckContact(clears);
  CheckContact(GraphContactPatch(Contact{}, full, &a, &b, kMarkerId));
  CheckContact(GraphContactPatch(full, changed, &a, &b, kMarkerId));
}

// What the reader takes from an answer has the type the reader expects.
TEST(GraphCsdl, EveryPropertyTheReaderReadsIsOnContact) {
  const std::map<graph_detail::Shape, std::string> kTypes = {
      {graph_detail::Shape::kString, "Edm.String"},
      {graph_detail::Shape::kStrings, "Collection(Edm.String)"},
      {graph_detail::Shape::kEmails, "Collection(graph.emailAddress)"},
      {graph_detail::Shape::kAddress, "graph.physicalAddress"},
      {graph_detail::Shape::kBirthday, "Edm.DateTimeOffset"},
  };
  for (const graph_detail::Property& prop : graph_detail::Properties()) {
    const CsdlProperty* p = Schema().Find("contact", std::string(prop.name));
    ASSERT_NE(p, nullptr) << prop.name;
    EXPECT_EQ(p->type, kTypes.at(prop.shape)) << prop.name;
  }
  for (const char* name : {"id", "changeKey", "fileAs"}) {
    ASSERT_NE(Schema().Find("contact", name), nullptr) << name;
    EXPECT_EQ(Schema().Find("contact", name)->type, "Edm.String") << name;
  }
  const CsdlProperty* ext = Schema().Find("contact", "singleValueExtendedProperties");
  ASSERT_NE(ext, nullptr);
  EXPECT_EQ(ext->type, "Collection(graph.singleValueLegacyExtendedProperty)");
  EXPECT_EQ(Schema().Find("singleValueLegacyExtendedProperty", "value")->type, "Edm.String");
  for (std::string_view member : graph_detail::kAddressParts) {
    ASSERT_NE(Schema().Find("physicalAddress", std::string(member)), nullptr) << member;
  }
  EXPECT_NE(Schema().Find("emailAddress", "address"), nullptr);
  EXPECT_NE(Schema().Find("emailAddress", "name"), nullptr);
}

}  // namespace
}  // namespace roster
