// region_json.h — RegionModes as JSON ({"pending":"w","shared":"r"}): the form used both in the
// lease records and in the status report. Internal to lock/.
#pragma once

#include <nlohmann/json.hpp>

#include "leasefs/lock/lease_manager.h"

namespace leasefs::lock {

inline nlohmann::json ModesToJson(const RegionModes& modes) {
  nlohmann::json out = nlohmann::json::object();
  for (size_t i = 0; i < kRegionCount; i++) {
    if (modes[i] != Mode::kNone) {
      out[RegionName(static_cast<Region>(i))] = modes[i] == Mode::kWrite ? "w" : "r";
    }
  }
  return out;
}

}  // namespace leasefs::lock
