// leasefs/lock/volume_id.h — the identity of a shared directory, the same on every host.
//
// Leases name databases by their inode number on the shared storage (host_locks.h, IDENTITY),
// prefixed by a namespace that tells unrelated directories sharing one lease store apart. On one
// machine SOURCE's absolute path does that; across machines it does not (host A may mount the EFS
// share at /efs, host B at /mnt/efs). So a mount that leases through a shared store (DynamoDB)
// names the directory by a random id kept in a marker file, SOURCE/.leasefs-volume, which every
// host reads through the shared storage.
//
// Creation is atomic across hosts: the id is written to a uniquely named temporary file in SOURCE,
// fsynced, then hard-linked to the marker name. link() fails with EEXIST when the marker already
// exists (also on NFS), in which case the winner's id is read instead; so every host ends with the
// same id whichever wins. The temporary file is always removed.
//
// The mount hides the marker (passthrough's reserved root name): it cannot be listed, opened,
// removed or replaced through the mount, because two ids for one directory would split the cluster.
#pragma once

#include <string>

namespace leasefs::lock {

inline constexpr const char* kVolumeIdFile = ".leasefs-volume";

// Reads SOURCE/.leasefs-volume, creating it first if absent. On success sets *id (32 hex digits)
// and returns true; otherwise sets *error to one line (e.g. SOURCE is read-only: pass --namespace).
bool ReadOrCreateVolumeId(const std::string& source, std::string* id, std::string* error);

}  // namespace leasefs::lock
