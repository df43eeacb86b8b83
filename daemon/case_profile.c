/* The profile a case was decided under (case_profile.h). */
#include <assert.h>
#include <string.h>

#include "case_profile.h"

void case_profile(const config *cfg, const char *district, const char *profile_name, int64_t limit_s,
                  profile *ret) {
        const profile *p = config_profile_for(cfg, district);
        if (!p || strcmp(p->name, profile_name) != 0) {
                const profile *b = profiles_find(profile_name);
                if (b)
                        p = b;
        }
        if (!p)
                p = profiles_find(PROFILE_DEFAULT);
        assert(p);
        *ret = *p;
        if (limit_s > 0)
                ret->limit = limit_s * USEC_PER_SEC;
}
