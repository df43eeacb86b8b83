/* The profile a case was decided under, worked out the same way wherever a
 * case is looked at again (an outcome, the deadline watch): its district's
 * effective profile when the case was decided under that profile's name
 * (district and global overrides apply); else the built-in profile of that
 * name (the configuration has switched profiles since); else the district's
 * effective one. The limit is the case's own when known. */
#pragma once

#include <stdint.h>

#include "config.h"
#include "profiles.h"

/* limit_s: the case's limit_seconds; 0 when it has none (no case yet). */
void case_profile(const config *cfg, const char *district, const char *profile_name, int64_t limit_s,
                  profile *ret);
