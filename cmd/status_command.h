// status_command.h — `leasefs status MOUNTPOINT`: reads the mount's status attribute (see
// fuse/passthrough.h kStatusXattr) and prints it for people, or as JSON with --json.
//
// Contract: MOUNTPOINT must itself be a mount point of type fuse.leasefs in
// /proc/self/mountinfo (the attribute alone proves nothing: anyone may set it on a directory of
// theirs); otherwise one line, "leasefs: error: MOUNTPOINT is not a leasefs mount", and exit 1.
// The summary and every page of its snapshot's database list are read and reassembled, so the
// --json document is one object with "databases" as it always was (entries the caller may not
// see have "path": "" and "hidden": true). A mount from before pages answers it whole.
#pragma once

#include <string>

namespace leasefs::cmd {

int RunStatus(const std::string& mountpoint, bool as_json);

}  // namespace leasefs::cmd
