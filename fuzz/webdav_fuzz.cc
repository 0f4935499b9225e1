// libFuzzer target for the WebDAV multistatus parser: any bytes a server can
// send must come back as a Result, never a crash or a hang.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "connectors/carddav/webdav.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view xml(reinterpret_cast<const char*>(data), size);
  auto parsed = roster::webdav::ParseMultistatus(xml, "fuzz input");
  if (parsed.ok()) {
    for (const auto& response : parsed->responses) {
      (void)response.IsAddressBook();
      (void)response.IsCollection();
      (void)roster::webdav::UrlPath("http://h/book/", response.href);
    }
  }
  return 0;
}
