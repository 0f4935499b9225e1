// Multistatus parsing and WebDAV requests. pugixml knows nothing of
// namespaces, so element names are resolved to namespace URIs here by walking
// the xmlns declarations in scope: servers pick any prefix they like.
#include "connectors/carddav/webdav.h"

#include <cstdlib>
#include <cstring>
#include <exception>
#include <new>
#include <pugixml.hpp>

#include "core/text.h"

namespace roster::webdav {
namespace {

constexpr char kXmlDecl[] = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n";

// pugixml allocates through one global pair of functions. These charge a
// per-thread allowance that ParseMultistatus sets for the duration of a
// parse, so that no answer can grow a DOM past kMaxXmlParseBytes: outside a
// parse the allowance is unlimited.
thread_local size_t t_xml_allowance = SIZE_MAX;

void* XmlAllocate(size_t size) {
  if (t_xml_allowance != SIZE_MAX) {
    if (size > t_xml_allowance) return nullptr;  // pugixml reports "out of memory"
    t_xml_allowance -= size;
  }
  return std::malloc(size);
}

void XmlDeallocate(void* ptr) { std::free(ptr); }

// Installed before main, so before any pugixml document exists.
[[maybe_unused]] const bool kXmlAllocatorInstalled = [] {
  pugi::set_memory_management_functions(&XmlAllocate, &XmlDeallocate);
  return true;
}();

class XmlAllowance {
 public:
  explicit XmlAllowance(size_t bytes) { t_xml_allowance = bytes; }
  ~XmlAllowance() { t_xml_allowance = SIZE_MAX; }
  XmlAllowance(const XmlAllowance&) = delete;
  XmlAllowance& operator=(const XmlAllowance&) = delete;
};

// The namespace URI bound to `prefix` at `node` (empty prefix: the default).
std::string_view LookupNamespace(pugi::xml_node node, std::string_view prefix) {
  if (prefix == "xml") return "http://www.w3.org/XML/1998/namespace";
  std::string attr_name = prefix.empty() ? "xmlns" : "xmlns:" + std::string(prefix);
  for (; node; node = node.parent()) {
    if (node.type() != pugi::node_element) continue;
    pugi::xml_attribute attr = node.attribute(attr_name.c_str());
    if (attr) return attr.value();
  }
  return "";
}

struct Name {
  std::string_view ns;
  std::string_view local;
};

Name Resolve(pugi::xml_node node) {
  std::string_view qname = node.name();
  size_t colon = qname.find(':');
  if (colon == std::string_view::npos) return {LookupNamespace(node, ""), qname};
  return {LookupNamespace(node, qname.substr(0, colon)), qname.substr(colon + 1)};
}

bool Is(pugi::xml_node node, std::string_view ns, std::string_view local) {
  if (node.type() != pugi::node_element) return false;
  Name name = Resolve(node);
  return name.local == local && name.ns == ns;
}

pugi::xml_node Child(pugi::xml_node node, std::string_view ns, std::string_view local) {
  for (pugi::xml_node child : node.children()) {
    if (Is(child, ns, local)) return child;
  }
  return {};
}

// Text directly inside `node` (PCDATA and CDATA children, concatenated).
std::string DirectText(pugi::xml_node node) {
  std::string text;
  for (pugi::xml_node child : node.children()) {
    if (child.type() == pugi::node_pcdata || child.type() == pugi::node_cdata) {
      text += child.value();
    }
  }
  return text;
}

// "HTTP/1.1 404 Not Found" -> 404; 0 when unreadable.
int ParseStatusLine(std::string_view line) {
  line = TrimXmlSpace(line);
  size_t space = line.find(' ');
  if (space == std::string_view::npos) return 0;
  std::string_view rest = line.substr(space + 1);
  int code = 0;
  for (size_t i = 0; i < rest.size() && i < 3; ++i) {
    if (rest[i] < '0' || rest[i] > '9') return 0;
    code = code * 10 + (rest[i] - '0');
  }
  return code >= 100 && code <= 999 ? code : 0;
}

// Gathers descendant element names and hrefs of a property, bounded in depth
// so that a hostile document cannot overflow the stack.
bool Collect(pugi::xml_node node, int depth, DavProp* prop) {
  if (depth > kMaxXmlDepth) return false;
  for (pugi::xml_node child : node.children()) {
    if (child.type() != pugi::node_element) continue;
    Name name = Resolve(child);
    prop->elements.insert(Clark(name.ns, name.local));
    if (name.ns == kDav && name.local == "href") {
      prop->hrefs.emplace_back(TrimXmlSpace(DirectText(child)));
    }
    if (!Collect(child, depth + 1, prop)) return false;
  }
  return true;
}

Error Malformed(const std::string& context, const std::string& what) {
  return MakeError(ErrorKind::kInvalidData, "malformed XML in " + context + ": " + what);
}

Result<Multistatus> ParseDocument(const pugi::xml_document& doc, const std::string& context) {
  pugi::xml_node root = doc.document_element();
  if (!Is(root, kDav, "multistatus")) {
    return Malformed(context, "the root element is not DAV:multistatus");
  }
  Multistatus result;
  for (pugi::xml_node node : root.children()) {
    if (Is(node, kDav, "sync-token")) {
      result.sync_token = std::string(TrimXmlSpace(DirectText(node)));
      continue;
    }
    if (!Is(node, kDav, "response")) continue;
    if (result.responses.size() >= kMaxResponses) {
      return MakeError(ErrorKind::kInvalidData, "too many responses in " + context +
                                                    " (more than " + std::to_string(kMaxResponses) +
                                                    ")");
    }
    DavResponse response;
    response.href = std::string(TrimXmlSpace(DirectText(Child(node, kDav, "href"))));
    if (response.href.empty()) return Malformed(context, "a DAV:response without DAV:href");
    if (pugi::xml_node status = Child(node, kDav, "status")) {
      response.status = ParseStatusLine(DirectText(status));
    }
    for (pugi::xml_node propstat : node.children()) {
      if (!Is(propstat, kDav, "propstat")) continue;
      int status = ParseStatusLine(DirectText(Child(propstat, kDav, "status")));
      if (status < 200 || status > 299) continue;
      pugi::xml_node props = Child(propstat, kDav, "prop");
      for (pugi::xml_node prop_node : props.children()) {
        if (prop_node.type() != pugi::node_element) continue;
        Name name = Resolve(prop_node);
        DavProp prop;
        prop.text = DirectText(prop_node);
        if (!Collect(prop_node, 0, &prop)) return Malformed(context, "elements nested too deeply");
        response.props[Clark(name.ns, name.local)] = std::move(prop);
      }
    }
    result.responses.push_back(std::move(response));
  }
  return result;
}

std::string PropElement(const std::string& clark) {
  // "{ns}name" -> "<D:name/>" for the two namespaces declared on the root.
  size_t close = clark.find('}');
  std::string ns = clark.substr(1, close - 1);
  std::string name = clark.substr(close + 1);
  if (ns == kDav) return "<D:" + name + "/>";
  if (ns == kCardDav) return "<C:" + name + "/>";
  return "<X:" + name + " xmlns:X=\"" + XmlEscape(ns) + "\"/>";
}

}  // namespace

std::string Clark(std::string_view ns, std::string_view name) {
  std::string out;
  out.reserve(ns.size() + name.size() + 2);
  out += '{';
  out += ns;
  out += '}';
  out += name;
  return out;
}

const DavProp* DavResponse::Find(std::string_view ns, std::string_view name) const {
  auto it = props.find(Clark(ns, name));
  return it == props.end() ? nullptr : &it->second;
}

bool DavResponse::IsCollection() const {
  const DavProp* type = Find(kDav, "resourcetype");
  return type != nullptr && type->elements.count(Clark(kDav, "collection")) > 0;
}

bool DavResponse::IsAddressBook() const {
  const DavProp* type = Find(kDav, "resourcetype");
  return type != nullptr && type->elements.count(Clark(kCardDav, "addressbook")) > 0;
}

Result<Multistatus> ParseMultistatus(std::string_view xml, const std::string& context) {
  try {
    pugi::xml_document doc;
    pugi::xml_parse_result parsed;
    {
      XmlAllowance allowance(kMaxXmlParseBytes);
      parsed = doc.load_buffer(xml.data(), xml.size(), pugi::parse_default, pugi::encoding_utf8);
    }
    if (parsed.status == pugi::status_out_of_memory) {
      return MakeError(ErrorKind::kInvalidData,
                       context +
                           " is too complex to parse (its XML structure would take more than " +
                           std::to_string(kMaxXmlParseBytes >> 20) + " MiB)");
    }
    if (!parsed) return Malformed(context, parsed.description());
    return ParseDocument(doc, context);
  } catch (const std::bad_alloc&) {
    return MakeError(ErrorKind::kInvalidData, context + " is too large to parse");
  } catch (const std::exception& e) {
    return Malformed(context, e.what());
  }
}

std::string_view TrimXmlSpace(std::string_view s) { return text::Trim(s, " \t\r\n"); }

std::string XmlEscape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string EncodeSegment(std::string_view segment) { return text::PercentEncode(segment); }

std::string DecodePercent(std::string_view encoded) {
  std::string out;
  for (size_t i = 0; i < encoded.size(); ++i) {
    if (const int escaped = text::PercentEscapeAt(encoded, i); escaped >= 0) {
      out += static_cast<char>(escaped);
      i += 2;
    } else {
      out += encoded[i];
    }
  }
  return out;
}

std::string UrlOrigin(const std::string& url) {
  size_t scheme = url.find("://");
  if (scheme == std::string::npos) return "";
  size_t path = url.find_first_of("/?#", scheme + 3);
  return url.substr(0, path);
}

std::string UrlPath(const std::string& base, const std::string& href) {
  std::string absolute = ResolveUrl(base, href);
  std::string origin = UrlOrigin(absolute);
  std::string path = absolute.substr(origin.size());
  size_t query = path.find_first_of("?#");
  if (query != std::string::npos) path.erase(query);
  return path.empty() ? "/" : path;
}

Href ResolveHref(const std::string& base, std::string_view href) {
  Href out;
  std::string absolute = ResolveUrl(base, std::string(TrimXmlSpace(href)));
  std::string origin = UrlOrigin(absolute);
  out.path = absolute.substr(origin.size());
  if (size_t query = out.path.find_first_of("?#"); query != std::string::npos) {
    out.path.erase(query);
  }
  if (out.path.empty()) out.path = "/";
  const std::string base_origin = CanonicalOrigin(base);
  out.same_origin = !base_origin.empty() && CanonicalOrigin(absolute) == base_origin;
  if (out.same_origin) out.url = UrlOrigin(base) + out.path;
  return out;
}

bool IsDirectMember(std::string_view collection, std::string_view path) {
  if (collection.empty() || collection.back() != '/') return false;
  if (path.size() <= collection.size() || !path.starts_with(collection)) return false;
  std::string_view rest = path.substr(collection.size());
  if (rest.ends_with('/')) rest.remove_suffix(1);
  // An encoded slash or backslash (canonical escaping spells them "%2F",
  // "%5C") is one segment to us, but a server that decodes it before
  // resolving dot segments could take "..%2F..%2Fbob" for another path.
  return !rest.empty() && rest.find('/') == std::string_view::npos && rest != "." && rest != ".." &&
         rest.find("%2F") == std::string_view::npos && rest.find("%5C") == std::string_view::npos;
}

std::string SafeServerValue(std::string_view value, size_t max_bytes) {
  std::string_view trimmed = TrimXmlSpace(value);
  return IsSafeHeaderValue(trimmed, max_bytes) ? std::string(trimmed) : std::string();
}

std::string PropfindBody(const std::vector<std::string>& props) {
  std::string body = kXmlDecl;
  body += "<D:propfind xmlns:D=\"DAV:\" xmlns:C=\"urn:ietf:params:xml:ns:carddav\"><D:prop>";
  for (const std::string& prop : props) body += PropElement(prop);
  body += "</D:prop></D:propfind>\n";
  return body;
}

std::string SyncCollectionBody(const std::string& sync_token) {
  std::string body = kXmlDecl;
  body += "<D:sync-collection xmlns:D=\"DAV:\">";
  body += sync_token.empty() ? "<D:sync-token/>"
                             : "<D:sync-token>" + XmlEscape(sync_token) + "</D:sync-token>";
  body += "<D:sync-level>1</D:sync-level><D:prop><D:getetag/><D:getcontenttype/></D:prop>";
  body += "</D:sync-collection>\n";
  return body;
}

std::string MultigetBody(const std::vector<std::string>& hrefs, bool vcard4) {
  std::string body = kXmlDecl;
  body += "<C:addressbook-multiget xmlns:D=\"DAV:\" xmlns:C=\"urn:ietf:params:xml:ns:carddav\">";
  body += vcard4 ? "<D:prop><D:getetag/>"
                   "<C:address-data content-type=\"text/vcard\" version=\"4.0\"/></D:prop>"
                 : "<D:prop><D:getetag/><C:address-data/></D:prop>";
  for (const std::string& href : hrefs) body += "<D:href>" + XmlEscape(href) + "</D:href>";
  body += "</C:addressbook-multiget>\n";
  return body;
}

Result<HttpResponse> DavClient::Send(const std::string& method, const std::string& url,
                                     std::vector<std::pair<std::string, std::string>> headers,
                                     std::string body) {
  HttpRequest request;
  request.method = method;
  request.url = url;
  request.headers = std::move(headers);
  request.body = std::move(body);
  if (budget_ != nullptr && budget_->exhausted()) {
    return MakeError(ErrorKind::kAborted,
                     method + " " + url + " not sent: this run already read " +
                         std::to_string(budget_->limit() >> 20) +
                         " MiB from the server, the most one target may send in a run");
  }
  Result<HttpResponse> response = http_->Send(request);
  if (response.ok()) {
    if (budget_ != nullptr) budget_->Spend(response->body.size());
    if (response->body.size() > max_body_bytes_) {
      return MakeError(ErrorKind::kInvalidData, method + " " + url + ": response larger than " +
                                                    std::to_string(max_body_bytes_) + " bytes");
    }
  }
  return response;
}

Error DavClient::StatusError(const HttpResponse& response, const std::string& what) const {
  if (response.status != 401) return HttpStatusError(response, what);
  Error refused = MakeError(
      ErrorKind::kAccessDenied,
      user_.empty()
          ? what +
                ": the server asks for credentials and none are "
                "configured (HTTP 401)"
          : what + ": the server refused the credentials of user \"" + user_ + "\" (HTTP 401)");
  refused.credential_refused = true;
  return refused;
}

Result<Multistatus> DavClient::ParseResponse(const HttpResponse& response,
                                             const std::string& method, const std::string& url) {
  if (response.status != 207) return StatusError(response, method + " " + url);
  return ParseMultistatus(response.body, method + " response from " + url);
}

Result<Multistatus> DavClient::Propfind(const std::string& url, int depth,
                                        const std::vector<std::string>& props) {
  ROSTER_ASSIGN_OR_RETURN(
      HttpResponse response,
      Send("PROPFIND", url,
           {{"Depth", std::to_string(depth)}, {"Content-Type", "application/xml; charset=utf-8"}},
           PropfindBody(props)));
  return ParseResponse(response, "PROPFIND", url);
}

Status DavClient::Mkcol(const std::string& url, bool addressbook, const std::string& displayname,
                        bool exists_ok) {
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  if (addressbook) {
    headers.emplace_back("Content-Type", "application/xml; charset=utf-8");
    body = kXmlDecl;
    body +=
        "<D:mkcol xmlns:D=\"DAV:\" xmlns:C=\"urn:ietf:params:xml:ns:carddav\"><D:set><D:prop>"
        "<D:resourcetype><D:collection/><C:addressbook/></D:resourcetype>";
    if (!displayname.empty()) {
      body += "<D:displayname>" + XmlEscape(displayname) + "</D:displayname>";
    }
    body += "</D:prop></D:set></D:mkcol>\n";
  }
  ROSTER_ASSIGN_OR_RETURN(HttpResponse response,
                          Send("MKCOL", url, std::move(headers), std::move(body)));
  if (response.status >= 200 && response.status <= 299) return {};
  if (exists_ok && response.status == 405) return {};
  return StatusError(response, "MKCOL " + url);
}

}  // namespace roster::webdav
