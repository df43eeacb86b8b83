/* A new referral's referral_stats facts (referral_stats.h). */
#include <assert.h>
#include <string.h>

#include "referral_stats.h"

/* The next character of UTF-8 text (a NUL stays where it is). */
static const char *next_char(const char *s) {
        if (!*s)
                return s;
        s++;
        while ((*(const unsigned char *)s & 0xC0) == 0x80)
                s++;
        return s;
}

/* Does s begin with pattern, `_` matching any one character? */
static bool match_at(const char *s, const char *pattern) {
        for (const char *p = pattern; *p; p++) {
                if (!*s)
                        return false;
                if (*p == '_') {
                        s = next_char(s);
                } else {
                        if (*s != *p)
                                return false;
                        s++;
                }
        }
        return true;
}

bool referral_stats_like(const char *s, const char *pattern) {
        assert(s && pattern && !strpbrk(pattern, "%\\"));
        for (;; s = next_char(s)) {
                if (match_at(s, pattern))
                        return true;
                if (!*s)
                        return false;
        }
}

/* The view's tests of the decision's text, bit by bit (schemas/011_referral_stats.sql). */
static const struct {
        uint32_t bit;
        bool flags; /* d.flags, else d.reasons */
        const char *pattern;
} text_bits[] = {
        {STATS_BELOW_MIN_AGE, false, "BELOW_MIN_AGE"},
        {STATS_ABOVE_MAX_AGE, false, "ABOVE_MAX_AGE"},
        {STATS_NO_QUALIFYING_CONCERN, false, "NO_QUALIFYING_CONCERN"},
        {STATS_NOT_IMPRISONABLE, false, "NOT_IMPRISONABLE"},
        {STATS_NOT_FIRST_SUSPICION, false, "NOT_FIRST_SUSPICION"},
        {STATS_ASSESSMENT_FIRST, false, "PROTECTIVE_ASSESSMENT_FIRST"},
        {STATS_PRELIMINARY_INVESTIGATION, false, "PRELIMINARY_INVESTIGATION"},
        {STATS_CONTACT_MISSING, true, "CONTACT_MISSING"},
        {STATS_LATE_REFERRAL, true, "LATE_REFERRAL"},
};

uint32_t referral_stats_facts_new(const referral_stats_new *n) {
        uint32_t facts = 0;
        for (size_t i = 0; i < sizeof text_bits / sizeof text_bits[0]; i++)
                if (referral_stats_like(text_bits[i].flags ? n->flags : n->reasons, text_bits[i].pattern))
                        facts |= text_bits[i].bit;
        if (n->has_case)
                facts |= STATS_HAS_CASE;
        /* held in time, police, guardians, follow-ups, held: no held_at yet */
        if (n->missed)
                facts |= STATS_MISSED;
        if (n->assessment_due)
                facts |= STATS_ASSESSMENT_DUE;
        /* assessed on time or late: no PROTECTIVE_ASSESSMENT_RECORDED yet */
        return facts;
}
