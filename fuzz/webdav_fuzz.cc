// libFuzzer target for the WebDAV multistatus parser and the href resolver:
// any bytes a server can send must come back as a Result, never a crash or a
// hang, and no href it names may resolve to a member outside the book.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "connectors/carddav/webdav.h"

namespace {

constexpr char kBook[] = "http://h/alice/book/";
constexpr char kBookPath[] = "/alice/book/";

// What a member of the book must look like once resolved: on the book's
// origin, one segment below its path, with no dot segment left in it.
void CheckHref(std::string_view href) {
  roster::webdav::Href h = roster::webdav::ResolveHref(kBook, href);
  if (!h.same_origin || !roster::webdav::IsDirectMember(kBookPath, h.path)) return;
  std::string_view rest = std::string_view(h.path).substr(sizeof(kBookPath) - 1);
  if (!h.path.starts_with(kBookPath) || rest == "." || rest == ".." || rest == "./" ||
      rest == "../" || h.url != "http://h" + h.path) {
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view xml(reinterpret_cast<const char*>(data), size);
  auto parsed = roster::webdav::ParseMultistatus(xml, "fuzz input");
  if (parsed.ok()) {
    for (const auto& response : parsed->responses) {
      (void)response.IsAddressBook();
      (void)response.IsCollection();
      (void)roster::webdav::UrlPath(kBook, response.href);
      CheckHref(response.href);
    }
    std::string token = roster::webdav::SafeServerValue(parsed->sync_token, 4096);
    for (char c : token) {
      if (c < 0x20 || c > 0x7e) std::abort();
    }
  }
  // The raw bytes as an href too: hostile ones need not be well-formed XML.
  CheckHref(xml.substr(0, 4096));
  return 0;
}
