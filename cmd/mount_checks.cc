#include "mount_checks.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "leasefs/lock/dynamodb_store.h"

namespace leasefs::cmd {
namespace {

std::string Quote(const std::string& path) {
  return "'" + path + "'";
}

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string UnescapeMountinfo(const std::string& field) {
  auto is_octal = [](char c) { return c >= '0' && c <= '7'; };
  std::string out;
  for (size_t i = 0; i < field.size(); i++) {
    if (field[i] == '\\' && i + 3 < field.size() && is_octal(field[i + 1]) &&
        is_octal(field[i + 2]) && is_octal(field[i + 3])) {
      out.push_back(static_cast<char>((field[i + 1] - '0') * 64 + (field[i + 2] - '0') * 8 +
                                      (field[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(field[i]);
    }
  }
  return out;
}

std::optional<std::string> Canonical(const std::string& path, const std::string& what,
                                     std::string* out) {
  char resolved[PATH_MAX];
  if (!realpath(path.c_str(), resolved)) {
    return "cannot resolve " + what + " " + Quote(path) + ": " + std::strerror(errno);
  }
  *out = resolved;
  return std::nullopt;
}

}  // namespace

bool PathIsWithin(const std::string& inner, const std::string& outer) {
  if (inner == outer) return true;
  if (outer == "/") return true;
  return inner.size() > outer.size() && inner.compare(0, outer.size(), outer) == 0 &&
         inner[outer.size()] == '/';
}

bool IsMountPoint(const std::string& path, std::string* fstype, const std::string* mountinfo) {
  std::string contents;
  if (mountinfo) {
    contents = *mountinfo;
  } else {
    std::ifstream file("/proc/self/mountinfo");
    std::stringstream buffer;
    buffer << file.rdbuf();
    contents = buffer.str();
  }
  std::istringstream lines(contents);
  std::string line;
  bool found = false;
  while (std::getline(lines, line)) {
    // id parent major:minor root mountpoint options [optional...] - fstype source superoptions
    std::istringstream fields(line);
    std::string id, parent, devno, root, mount_point;
    if (!(fields >> id >> parent >> devno >> root >> mount_point)) continue;
    if (UnescapeMountinfo(mount_point) != path) continue;
    std::string field;
    while (fields >> field && field != "-") {
    }
    std::string type;
    fields >> type;
    if (fstype) *fstype = type;  // a later line is mounted on top of an earlier one
    found = true;
  }
  return found;
}

std::optional<std::string> CheckMountRequest(MountOptions& o) {
  if (o.lease_store.rfind("dynamodb://", 0) == 0) {
    std::string error;
    if (!lock::ParseDynamoStoreUri(o.lease_store, &error)) return error;
  } else if (o.lease_store != "none" && o.lease_store != "local" &&
             o.lease_store.rfind("local:", 0) != 0) {
    return "bad --lease-store '" + o.lease_store + "': expected local, local:PATH or none";
  }
  if (o.lease_store == "local:") return "bad --lease-store 'local:': the PATH is missing";
  for (const auto& [name, value] : {std::pair{"--replica", &o.replica}}) {
    if (!value->empty()) {
      return std::string(name) + " is not yet supported by this version of leasefs";
    }
  }

  struct stat st;
  if (stat(o.source.c_str(), &st) < 0) {
    if (errno == ENOENT) return "source directory " + Quote(o.source) + " does not exist";
    return "cannot access source " + Quote(o.source) + ": " + std::strerror(errno);
  }
  if (!S_ISDIR(st.st_mode)) return "source " + Quote(o.source) + " is not a directory";
  if (access(o.source.c_str(), R_OK | X_OK) < 0) {
    return "source directory " + Quote(o.source) + " is not readable: " + std::strerror(errno);
  }
  if (auto error = Canonical(o.source, "source", &o.source)) return error;

  if (stat(o.mountpoint.c_str(), &st) < 0) {
    if (errno == ENOENT) return "mountpoint " + Quote(o.mountpoint) + " does not exist";
    if (errno == ENOTCONN) {
      return "mountpoint " + Quote(o.mountpoint) +
             " is a dead FUSE mount (transport endpoint is not connected); clear it with "
             "fusermount3 -u " +
             o.mountpoint;
    }
    return "cannot access mountpoint " + Quote(o.mountpoint) + ": " + std::strerror(errno);
  }
  if (!S_ISDIR(st.st_mode)) return "mountpoint " + Quote(o.mountpoint) + " is not a directory";
  if (auto error = Canonical(o.mountpoint, "mountpoint", &o.mountpoint)) return error;
  std::string fstype;
  if (IsMountPoint(o.mountpoint, &fstype)) {
    return "mountpoint " + Quote(o.mountpoint) + " is busy: " + fstype +
           " is already mounted there";
  }

  if (o.source == o.mountpoint) return "source and mountpoint are the same directory";
  if (PathIsWithin(o.source, o.mountpoint)) {
    return "source " + Quote(o.source) + " is inside mountpoint " + Quote(o.mountpoint);
  }
  if (PathIsWithin(o.mountpoint, o.source)) {
    return "mountpoint " + Quote(o.mountpoint) + " is inside source " + Quote(o.source) +
           "; the filesystem would serve itself";
  }

  int fuse_fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
  if (fuse_fd < 0) {
    const int err = errno;
    if (err == EACCES || err == EPERM) {
      return std::string("cannot open /dev/fuse: ") + std::strerror(err) +
             " (only root may use it here: mount as root, or let users open it, mode 0666 as "
             "Debian's fuse3 package sets it)";
    }
    return std::string("cannot open /dev/fuse: ") + std::strerror(err) +
           " (load the fuse kernel module; in a container, pass the /dev/fuse device)";
  }
  close(fuse_fd);
  return std::nullopt;
}

}  // namespace leasefs::cmd
