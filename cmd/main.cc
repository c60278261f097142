// main.cc — the `leasefs` command, and `mount.leasefs` / `mount.fuse.leasefs` for mount(8).
//
// Exit status: 0 success, 1 the mount could not be made or served, 2 bad command line.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "leasefs/lock/dynamodb_store.h"
#include "mount_checks.h"
#include "mount_options.h"
#include "run_mount.h"
#include "status_command.h"

#ifndef LEASEFS_VERSION
#define LEASEFS_VERSION "unknown"
#endif

namespace {

using namespace leasefs::cmd;

int Fail(int code, const std::string& message) {
  std::fprintf(stderr, "leasefs: error: %s\n", message.c_str());
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  std::string program = argc > 0 ? argv[0] : "leasefs";
  program = program.substr(program.find_last_of('/') + 1);

  bool sloppy = false;
  if (program == "mount.leasefs" || program == "mount.fuse.leasefs") {
    HelperInvocation helper;
    std::vector<std::string> helper_argv(argv, argv + argc);
    if (auto error = ParseHelperArgs(helper_argv, &helper)) return Fail(kExitUsage, *error);
    if (helper.fake) return kExitOk;
    sloppy = helper.sloppy;
    args = helper.mount_args;
    args.insert(args.begin(), "mount");
  }

  CLI::App app{
      "leasefs: SQLite-safe shared storage. Mounts a shared directory (NFS, EFS) so that "
      "SQLite's locks work across every host that mounts it.",
      "leasefs"};
  app.set_version_flag("-V,--version", "leasefs " LEASEFS_VERSION);
  app.require_subcommand(1);
  CLI::App* mount = app.add_subcommand("mount", "Mount SOURCE on MOUNTPOINT");
  mount->footer(
      "Every option can also be given as -o key=value (e.g. -o attr_timeout=2,noatime), as in\n"
      "/etc/fstab:  /mnt/efs/db  /srv/db  fuse.leasefs  _netdev,noatime  0 0");
  MountOptions options;
  AddMountOptions(*mount, options);
  CLI::App* status = app.add_subcommand("status", "Show a mount's sessions, claims and counters");
  std::string status_mountpoint;
  bool status_json = false;
  status->add_option("mountpoint", status_mountpoint, "A leasefs mountpoint")->required();
  status->add_flag("--json", status_json, "Print the raw JSON status");
  CLI::App* table = app.add_subcommand("table", "Manage the DynamoDB table that holds the leases");
  table->require_subcommand(1);
  CLI::App* table_create = table->add_subcommand(
      "create",
      "Create TABLE (on-demand capacity, key `key`) and wait until it is active; "
      "an existing table with that schema is fine");
  leasefs::lock::DynamoStoreConfig table_config;
  table_create->add_option("table", table_config.table, "Table name")->required();
  table_create->add_option("--region", table_config.region,
                           "AWS region (default: AWS_REGION, AWS_DEFAULT_REGION, the profile's)");
  table_create->add_option("--endpoint", table_config.endpoint,
                           "DynamoDB endpoint URL (default: AWS_ENDPOINT_URL_DYNAMODB, "
                           "AWS_ENDPOINT_URL, else AWS's for the region)");

  if (!args.empty() && !args[0].empty() && args[0][0] != '-' && args[0] != "mount" &&
      args[0] != "status" && args[0] != "table") {
    return Fail(kExitUsage, "unknown command '" + args[0] + "' (see leasefs --help)");
  }
  const bool other_command = !args.empty() && (args[0] == "status" || args[0] == "table");
  auto mount_at = other_command ? args.end() : std::find(args.begin(), args.end(), "mount");
  if (mount_at != args.end()) {
    std::vector<std::string> mount_args(mount_at + 1, args.end());
    if (auto error = ExpandDashO(*mount, mount_args, options, sloppy)) {
      return Fail(kExitUsage, *error);
    }
    args.erase(mount_at + 1, args.end());
    args.insert(args.end(), mount_args.begin(), mount_args.end());
  }
  std::reverse(args.begin(), args.end());  // CLI11 consumes a reversed vector
  try {
    app.parse(args);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return Fail(kExitUsage, std::string(e.what()) + " (see leasefs --help)");
  }

  if (status->parsed()) return RunStatus(status_mountpoint, status_json);
  if (table_create->parsed()) {
    leasefs::lock::TableCreateResult result = leasefs::lock::CreateDynamoTable(table_config);
    if (!result.ok) return Fail(kExitFailure, result.message);
    std::printf("%s\n", result.message.c_str());
    return kExitOk;
  }
  if (mount->parsed()) {
    if (auto error = CheckMountRequest(options)) return Fail(kExitFailure, *error);
    return RunMount(options);
  }
  return kExitUsage;
}
