// volume_id.cc — see volume_id.h for the protocol.
#include "leasefs/lock/volume_id.h"

#include <fcntl.h>
#include <sys/random.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>

namespace leasefs::lock {
namespace {

std::string Describe(const std::string& path, int err) {
  return path + ": " + std::strerror(err);
}

bool IsValidId(const std::string& text) {
  if (text.size() != 32) return false;
  for (char c : text) {
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

// Reads the marker. Returns 0, ENOENT, or another errno; a malformed marker is EINVAL.
int ReadId(const std::string& path, std::string* id) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return errno;
  char buf[128];
  ssize_t n = ::read(fd, buf, sizeof buf);
  int err = n < 0 ? errno : 0;
  ::close(fd);
  if (err) return err;
  std::string text(buf, static_cast<size_t>(n));
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
  if (!IsValidId(text)) return EINVAL;
  *id = text;
  return 0;
}

std::string RandomId() {
  unsigned char bytes[16];
  size_t got = 0;
  while (got < sizeof bytes) {
    ssize_t n = getrandom(bytes + got, sizeof bytes - got, 0);
    if (n > 0) got += static_cast<size_t>(n);
  }
  static const char* hex = "0123456789abcdef";
  std::string id;
  for (unsigned char b : bytes) {
    id += hex[b >> 4];
    id += hex[b & 15];
  }
  return id;
}

}  // namespace

bool ReadOrCreateVolumeId(const std::string& source, std::string* id, std::string* error) {
  const std::string path = source + "/" + kVolumeIdFile;
  for (int attempt = 0; attempt < 3; attempt++) {
    int err = ReadId(path, id);
    if (err == 0) return true;
    if (err == EINVAL) {
      *error = path +
               " is not a leasefs volume id (32 hex digits); restore it from another "
               "host's copy, never replace it with a new one while any host has it mounted";
      return false;
    }
    if (err != ENOENT) {
      *error = "cannot read volume id " + Describe(path, err);
      return false;
    }
    std::string candidate = RandomId();
    std::string temp = source + "/.leasefs-volume." + candidate + ".tmp";
    int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
      *error = "cannot create the volume id in " + source + " (" + std::strerror(errno) +
               "); a read-only SOURCE needs --namespace NAME, the same on every host";
      return false;
    }
    std::string text = candidate + "\n";
    bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
                   ::fsync(fd) == 0;
    int write_err = errno;
    ::close(fd);
    if (!written) {
      ::unlink(temp.c_str());
      *error = "cannot write the volume id " + Describe(temp, write_err);
      return false;
    }
    int rc = ::link(temp.c_str(), path.c_str());
    int link_err = errno;
    ::unlink(temp.c_str());
    if (rc == 0) {
      *id = candidate;
      return true;
    }
    if (link_err != EEXIST) {
      *error = "cannot create the volume id " + Describe(path, link_err);
      return false;
    }
    // Another host won the race: read its id.
  }
  *error = "cannot settle the volume id " + path + " (it keeps disappearing)";
  return false;
}

}  // namespace leasefs::lock
