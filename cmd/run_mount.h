// run_mount.h — serve a checked mount request, in the foreground or as a daemon.
//
// Daemon mode: the process forks before anything else starts. The child sets up the filesystem
// and the mount and reports back over a pipe: "ok", or one line of error. The parent then waits
// until the mount answers a stat() (the child is serving) and exits 0; on an error line it prints
// it and exits 1. So `leasefs mount` returns only once the mount is usable, or with the reason it
// is not. The child detaches (setsid, stdio to /dev/null, logs to syslog) and serves until
// unmounted or signalled.
//
// Foreground mode serves in this process; under systemd (Type=notify) it reports READY=1 once
// mounted and STOPPING=1 when it begins to stop.
#pragma once

#include "mount_options.h"

namespace leasefs::cmd {

int RunMount(const MountOptions& options);

}  // namespace leasefs::cmd
