// status_command.h — `leasefs status MOUNTPOINT`: reads the mount's status attribute (see
// fuse/passthrough.h kStatusXattr) and prints it for people, or as JSON with --json.
#pragma once

#include <string>

namespace leasefs::cmd {

int RunStatus(const std::string& mountpoint, bool as_json);

}  // namespace leasefs::cmd
