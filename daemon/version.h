/* The version of allvarsd and allvarsctl (--version, the metrics' build info,
 * the instances table). The Makefile may define it from the outside. */
#pragma once

#ifndef ALLVARSD_VERSION
#define ALLVARSD_VERSION "0.1.0"
#endif
