// mount_checks.h — everything about a mount request that can be checked before mounting.
//
// Contract: CheckMountRequest() resolves SOURCE and MOUNTPOINT to canonical absolute paths (in
// place) and returns one line naming the first problem, or nullopt. It checks, in order: options
// that are not supported yet; SOURCE exists, is a directory and is readable; MOUNTPOINT exists, is
// a directory, is not a dead FUSE mount and is not already a mount point; neither lies inside the
// other; /dev/fuse can be opened. It changes nothing on the system.
#pragma once

#include <optional>
#include <string>

#include "mount_options.h"

namespace leasefs::cmd {

std::optional<std::string> CheckMountRequest(MountOptions& options);

// True if `path` (canonical) is a mount point according to /proc/self/mountinfo; *fstype gets
// the filesystem type of the mount on top (the last one listed there). `mountinfo` may be given
// for tests (the file's contents).
bool IsMountPoint(const std::string& path, std::string* fstype,
                  const std::string* mountinfo = nullptr);

// True if `inner` is `outer` or lies below it (both canonical).
bool PathIsWithin(const std::string& inner, const std::string& outer);

}  // namespace leasefs::cmd
