// The server's own bound for the CardDAV benchmark: PUT every .vcf file of a
// folder into a collection, one after another over one kept-alive libcurl
// connection, with If-None-Match: * and no Expect: 100-continue.
//
//   bench/bare_put COLLECTION_URL FOLDER
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "http/http.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: bare_put COLLECTION_URL FOLDER\n");
    return 2;
  }
  std::string base = argv[1];
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(argv[2])) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  roster::HttpOptions options;
  options.username = "bare";
  options.password = "x";
  auto client = roster::NewCurlHttpClient(options);
  auto start = std::chrono::steady_clock::now();
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    std::stringstream body;
    body << in.rdbuf();
    roster::HttpRequest req;
    req.method = "PUT";
    req.url = base + f.filename().string();
    req.headers = {{"Content-Type", "text/vcard; charset=utf-8"}, {"If-None-Match", "*"}};
    req.body = body.str();
    auto resp = client->Send(req);
    if (!resp.ok() || (resp->status != 201 && resp->status != 204)) {
      std::fprintf(stderr, "PUT %s failed: %s\n", req.url.c_str(),
                   resp.ok() ? std::to_string(resp->status).c_str() : resp.error().message.c_str());
      return 1;
    }
  }
  std::chrono::duration<double> secs = std::chrono::steady_clock::now() - start;
  std::printf("%zu PUTs in %.2f s\n", files.size(), secs.count());
  return 0;
}
