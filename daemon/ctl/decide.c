/* allvarsctl decide: run the rules engine on one binary-encoded PoliceReferral
 * and print the decision as eight key=value lines:
 *
 *   allvarsctl decide [--profile NAME] [--set KEY=VALUE]... [--now RFC3339]
 *                     [--prior-referrals N] [--prior-qualifying N] [--explain] [FILE]
 *
 * Any error exits 2 with one line on standard error naming the problem; the
 * line never carries a field's value (referrals hold personal data). */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "codec.h"
#include "commands.h"
#include "profiles.h"
#include "reasons.h"
#include "rules.h"

#define DECIDE_MAX_BYTES (1024 * 1024)
#define EXIT_ERROR 2

static const char usage_text[] =
        "Usage: allvarsctl decide [OPTIONS] [FILE]\n"
        "Decide one binary-encoded allvarssamtal.v1.PoliceReferral read from FILE or standard input.\n\n"
        "  --profile NAME          the policy profile (default " PROFILE_DEFAULT ")\n"
        "  --set KEY=VALUE         override a profile parameter (repeatable)\n"
        "  --now RFC3339           the current time (default: the system clock)\n"
        "  --prior-referrals N     earlier referrals of the same person (default 0)\n"
        "  --prior-qualifying N    of those, the ones that meet the profile's first-time rule (default 0)\n"
        "  --explain               explain each reason and flag, in Swedish and English\n"
        "  --help                  this text\n";

__attribute__((format(printf, 1, 2))) static int fail(const char *fmt, ...) {
        va_list ap;
        fputs("allvarsctl decide: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return EXIT_ERROR;
}

static int parse_count(const char *s, uint32_t *ret) {
        if (!s || *s < '0' || *s > '9')
                return -EINVAL;
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno != 0 || *end != '\0' || v > UINT32_MAX)
                return -EINVAL;
        *ret = (uint32_t)v;
        return 0;
}

/* Read all of f, at most max + 1 bytes (so that "too large" can be told). */
static int read_all(FILE *f, size_t max, uint8_t **ret, size_t *ret_len) {
        size_t cap = 64 * 1024, len = 0;
        uint8_t *buf = malloc(cap);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                if (len == cap) {
                        if (cap > max) {
                                break;
                        }
                        cap *= 2;
                        uint8_t *n = realloc(buf, cap);
                        if (!n) {
                                free(buf);
                                return -ENOMEM;
                        }
                        buf = n;
                }
                size_t n = fread(buf + len, 1, cap - len, f);
                len += n;
                if (n == 0) {
                        if (ferror(f)) {
                                free(buf);
                                return -EIO;
                        }
                        break;
                }
        }
        *ret = buf;
        *ret_len = len;
        return 0;
}

static void print_time(const char *key, usec_t t) {
        char buf[RFC3339_MAX];
        printf("%s=%s\n", key, t ? clock_format_rfc3339(t, buf) : "");
}

static void explain(const reason_text *table, uint32_t bits) {
        for (const reason_text *t = table; t->code; t++)
                if (bits & t->bit)
                        printf("%s: %s / %s\n", t->code, t->sv, t->en);
}

static void list_profiles(FILE *f) {
        for (size_t i = 0; i < profiles_builtin_count(); i++)
                fprintf(f, "%s%s", i ? ", " : "", profiles_builtin(i)->name);
}

int ctl_decide_main(int argc, char **argv) {
        static const struct option options[] = {
                {"profile", required_argument, NULL, 'p'},
                {"set", required_argument, NULL, 's'},
                {"now", required_argument, NULL, 'n'},
                {"prior-referrals", required_argument, NULL, 'r'},
                {"prior-qualifying", required_argument, NULL, 'q'},
                {"explain", no_argument, NULL, 'e'},
                {"help", no_argument, NULL, 'h'},
                {NULL, 0, NULL, 0},
        };
        const char *profile_name = PROFILE_DEFAULT;
        const char *sets[32];
        size_t n_sets = 0;
        usec_t now = 0;
        bool have_now = false, want_explain = false;
        rules_history history = {0};
        int c;

        optind = 1;
        opterr = 0;
        while ((c = getopt_long(argc, argv, ":p:s:n:r:q:eh", options, NULL)) >= 0) {
                switch (c) {
                case 'p': profile_name = optarg; break;
                case 's':
                        if (n_sets >= sizeof sets / sizeof sets[0])
                                return fail("too many --set options");
                        sets[n_sets++] = optarg;
                        break;
                case 'n':
                        if (clock_parse_rfc3339(optarg, &now) < 0)
                                return fail("--now: not an RFC 3339 time: %s", optarg);
                        have_now = true;
                        break;
                case 'r':
                        if (parse_count(optarg, &history.prior_referrals) < 0)
                                return fail("--prior-referrals: not a count: %s", optarg);
                        break;
                case 'q':
                        if (parse_count(optarg, &history.prior_qualifying) < 0)
                                return fail("--prior-qualifying: not a count: %s", optarg);
                        break;
                case 'e': want_explain = true; break;
                case 'h': fputs(usage_text, stdout); return 0;
                case ':': return fail("option %s needs a value", argv[optind - 1]);
                default: return fail("unknown option %s; see 'allvarsctl decide --help'", argv[optind - 1]);
                }
        }
        if (argc - optind > 1)
                return fail("at most one FILE; see 'allvarsctl decide --help'");
        if (history.prior_qualifying > history.prior_referrals)
                return fail("--prior-qualifying (%u) exceeds --prior-referrals (%u)", history.prior_qualifying,
                            history.prior_referrals);

        const profile *builtin = profiles_find(profile_name);
        if (!builtin) {
                fprintf(stderr, "allvarsctl decide: unknown profile '%s' (known: ", profile_name);
                list_profiles(stderr);
                fputs(")\n", stderr);
                return EXIT_ERROR;
        }
        profile p = *builtin;
        for (size_t i = 0; i < n_sets; i++) {
                char key[64];
                const char *eq = strchr(sets[i], '=');
                if (!eq || (size_t)(eq - sets[i]) >= sizeof key)
                        return fail("--set: expected KEY=VALUE");
                memcpy(key, sets[i], (size_t)(eq - sets[i]));
                key[eq - sets[i]] = '\0';
                int r = profile_set(&p, key, eq + 1);
                if (r == -ENOENT)
                        return fail("--set: unknown profile parameter '%s'", key);
                if (r < 0)
                        return fail("--set: bad value for %s", key);
        }

        const char *path = optind < argc ? argv[optind] : "-";
        FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rbe");
        if (!f)
                return fail("%s: %s", path, strerror(errno));
        uint8_t *buf = NULL;
        size_t len = 0;
        int r = read_all(f, DECIDE_MAX_BYTES, &buf, &len);
        if (f != stdin)
                fclose(f);
        if (r < 0)
                return fail("%s: %s", path, strerror(-r));

        codec_error err;
        codec_referral *ref = codec_referral_decode(buf, len, DECIDE_MAX_BYTES, &err);
        free(buf);
        if (!ref)
                return fail("referral rejected: %s: %s", dead_letter_reason_code(err.reason), err.detail);

        if (!have_now)
                now = clock_realtime();
        decision d;
        rules_decide(&p, codec_referral_msg(ref), &history, now, &d);
        codec_referral_free(ref);

        char reasons[512], flags[512];
        reasons_format(reason_texts, d.reasons, reasons, sizeof reasons);
        reasons_format(flag_texts, d.flags, flags, sizeof flags);
        printf("outcome=%s\n", decision_outcome_code(d.outcome));
        printf("reasons=%s\n", reasons);
        printf("flags=%s\n", flags);
        if (d.age >= 0)
                printf("age=%d\n", d.age);
        else
                printf("age=\n");
        print_time("deadline", d.deadline);
        printf("deadline_kind=%s\n", deadline_kind_code(d.deadline_kind));
        print_time("protective_assessment_due", d.protective_assessment_due);
        printf("profile=%s\n", p.name);
        if (want_explain) {
                putchar('\n');
                explain(reason_texts, d.reasons);
                explain(flag_texts, d.flags);
        }
        if (fflush(stdout) != 0 || ferror(stdout))
                return fail("writing the decision: %s", strerror(errno));
        return 0;
}
