// hash-files FILE...: the SHA-256 of each file, printed as sha256sum prints it,
// in the order given. All the files are read and hashed at once, on a pool of
// threads (one per core), each in 64 KiB pieces: a file of any size takes
// little memory (an endless one, such as /dev/zero, hashes until stopped, as
// sha256sum does). One that cannot be read is reported by its error's name, and
// the exit code is 1. The twin of hash-files.js:
//
//   const sums = await Promise.allSettled(files.map(sha256));
#include <crew/crew.hpp>
#include <openssl/evp.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>

// On a pool thread: the file's SHA-256 in hex, or why it cannot be read.
crew::result<std::string> sha256(crew::message name) {
  std::string path = name.get<std::string>(), hex;
  std::ifstream file(path, std::ios::binary);
  if (!file || std::filesystem::is_directory(path)) return crew::uv_error(file ? UV_EISDIR : -errno);
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> sha(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(sha.get(), EVP_sha256(), nullptr);
  std::vector<char> piece(64 * 1024);
  while (file.read(piece.data(), static_cast<std::streamsize>(piece.size())) || file.gcount() > 0)
    EVP_DigestUpdate(sha.get(), piece.data(), static_cast<std::size_t>(file.gcount()));
  if (file.bad()) return crew::uv_error(UV_EIO);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  EVP_DigestFinal_ex(sha.get(), digest, &size);
  for (unsigned char byte : std::span(digest, size)) hex += {"0123456789abcdef"[byte >> 4], "0123456789abcdef"[byte & 15]};
  return hex;
}

crew::task<> hash_all(std::vector<std::string> files, int& exit_code) {
  crew::pool pool(sha256);
  std::vector<crew::awaitable<crew::result<crew::message>>> runs;
  for (const std::string& file : files) runs.push_back(pool.run(file));
  std::vector<crew::result<crew::message>> sums = co_await crew::when_all(std::move(runs));
  for (std::size_t i = 0; i < files.size(); ++i) {
    exit_code |= !sums[i];
    if (sums[i])
      std::printf("%s  %s\n", sums[i]->get<std::string>().c_str(), files[i].c_str());
    else
      std::fprintf(stderr, "hash-files: %s: %s\n", files[i].c_str(), crew::error_name(sums[i].error()).c_str());
  }
}

int main(int argc, char** argv) {
  int exit_code = 0;
  crew::task<> hashing = hash_all({argv + 1, argv + argc}, exit_code);
  crew::loop::current().run();
  return exit_code;
}
