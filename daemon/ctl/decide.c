/* allvarsctl decide: run the rules engine on one PoliceReferral, binary or in
 * the text format, and print the decision as eight key=value lines or as JSON:
 *
 *   allvarsctl decide [--profile NAME] [--set KEY=VALUE]... [--config FILE]
 *                     [--format auto|text|binary] [--now RFC3339] [--json]
 *                     [--prior-referrals N] [--prior-qualifying N] [--explain] [FILE]
 *
 * With --config the profile is the one the daemon would use for the referral's
 * district (config_profile_for), and the size limit is the configured one. Exit
 * codes as allvarsctl(1): 2 for a wrong command line, 1 when the referral is
 * rejected or cannot be read, 0 with a decision. Errors are one line on standard
 * error that never carries a field's value (referrals hold personal data). */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "codec.h"
#include "common.h"
#include "profiles.h"
#include "reasons.h"
#include "rules.h"
#include "textpb.h"

#define DECIDE_MAX_BYTES (1024 * 1024)

static const char usage_text[] =
        "Usage: allvarsctl decide [OPTIONS] [FILE]\n"
        "Decide one allvarssamtal.v1.PoliceReferral read from FILE or standard input.\n\n"
        "  --format auto|text|binary  the input's encoding: the protobuf wire format or the text format\n"
        "                          (as protoc --encode reads it); auto (default) tells them apart\n"
        "  --profile NAME          the policy profile (default " PROFILE_DEFAULT ")\n"
        "  --set KEY=VALUE         override a profile parameter (repeatable)\n"
        "  --config FILE           the daemon's configuration: its profile for the referral's district\n"
        "                          (profile.* and district.*), as the daemon applies it\n"
        "  --now RFC3339           the current time (default: the system clock)\n"
        "  --prior-referrals N     earlier referrals of the same person (default 0)\n"
        "  --prior-qualifying N    of those, the ones that meet the profile's first-time rule (default 0)\n"
        "  --explain               explain each reason and flag, in Swedish and English\n"
        "  --json                  one JSON object instead of key=value lines\n"
        "  --help                  this text\n"
        "Exit status: 0 decided, 1 the referral rejected or unreadable, 2 a wrong command line.\n";

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

/* A JSON string: the texts are ours (codes, names, explanations), UTF-8. */
static void json_string(const char *s) {
        putchar('"');
        for (; *s; s++) {
                unsigned char ch = (unsigned char)*s;
                if (ch == '"' || ch == '\\')
                        printf("\\%c", ch);
                else if (ch < 0x20)
                        printf("\\u%04x", ch);
                else
                        putchar(ch);
        }
        putchar('"');
}

static void json_time(usec_t t) {
        char buf[RFC3339_MAX];
        if (t)
                json_string(clock_format_rfc3339(t, buf));
        else
                fputs("null", stdout);
}

static void json_codes(const reason_text *table, uint32_t bits, bool with_texts) {
        putchar('[');
        bool first = true;
        for (const reason_text *t = table; t->code; t++) {
                if (!(bits & t->bit))
                        continue;
                fputs(first ? "" : ",", stdout);
                first = false;
                if (with_texts) {
                        fputs("{\"code\":", stdout);
                        json_string(t->code);
                        fputs(",\"sv\":", stdout);
                        json_string(t->sv);
                        fputs(",\"en\":", stdout);
                        json_string(t->en);
                        putchar('}');
                } else {
                        json_string(t->code);
                }
        }
        putchar(']');
}

static void print_json(const decision *d, const profile *p, bool want_explain) {
        fputs("{\"outcome\":", stdout);
        json_string(decision_outcome_code(d->outcome));
        fputs(",\"reasons\":", stdout);
        json_codes(reason_texts, d->reasons, want_explain);
        fputs(",\"flags\":", stdout);
        json_codes(flag_texts, d->flags, want_explain);
        if (d->age >= 0)
                printf(",\"age\":%d", d->age);
        else
                fputs(",\"age\":null", stdout);
        fputs(",\"deadline\":", stdout);
        json_time(d->deadline);
        fputs(",\"deadline_kind\":", stdout);
        if (d->deadline_kind != DEADLINE_NONE)
                json_string(deadline_kind_code(d->deadline_kind));
        else
                fputs("null", stdout);
        fputs(",\"protective_assessment_due\":", stdout);
        json_time(d->protective_assessment_due);
        fputs(",\"profile\":", stdout);
        json_string(p->name);
        printf(",\"profile_version\":%u}\n", p->version);
}

static void print_lines(const decision *d, const profile *p, bool want_explain) {
        char reasons[512], flags[512];
        reasons_format(reason_texts, d->reasons, reasons, sizeof reasons);
        reasons_format(flag_texts, d->flags, flags, sizeof flags);
        printf("outcome=%s\n", decision_outcome_code(d->outcome));
        printf("reasons=%s\n", reasons);
        printf("flags=%s\n", flags);
        if (d->age >= 0)
                printf("age=%d\n", d->age);
        else
                printf("age=\n");
        print_time("deadline", d->deadline);
        printf("deadline_kind=%s\n", deadline_kind_code(d->deadline_kind));
        print_time("protective_assessment_due", d->protective_assessment_due);
        printf("profile=%s\n", p->name);
        if (want_explain) {
                putchar('\n');
                explain(reason_texts, d->reasons);
                explain(flag_texts, d->flags);
        }
}

typedef enum input_format { FORMAT_AUTO, FORMAT_TEXT, FORMAT_BINARY } input_format;

/* The referral of buf, encoded as format says: decoded and validated exactly as the
 * daemon does (codec.c); NULL after printing why. */
static codec_referral *read_referral(ctl *c, const uint8_t *buf, size_t len, input_format format, size_t max_bytes) {
        const uint8_t *wire = buf;
        uint8_t *encoded = NULL;
        size_t wire_len = len;
        if (format == FORMAT_TEXT ||
            (format == FORMAT_AUTO && textpb_sniff(&allvarssamtal__v1__police_referral__descriptor, buf, len))) {
                char err[160];
                int r = textpb_encode(&allvarssamtal__v1__police_referral__descriptor, (const char *)buf, len,
                                      &encoded, &wire_len, err, sizeof err);
                if (r < 0) {
                        ctl_fail(c, "referral rejected: not a PoliceReferral in text format: %s",
                                 r == -EINVAL ? err : strerror(-r));
                        return NULL;
                }
                wire = encoded;
        }
        codec_error e;
        codec_referral *ref = codec_referral_decode(wire, wire_len, max_bytes, &e);
        free(encoded);
        if (!ref)
                ctl_fail(c, "referral rejected: %s: %s", dead_letter_reason_code(e.reason), e.detail);
        return ref;
}

int ctl_decide_main(int argc, char **argv) {
        enum { OPT_PROFILE = 1, OPT_SET, OPT_PRIOR_REFERRALS, OPT_PRIOR_QUALIFYING, OPT_EXPLAIN, OPT_FORMAT };
        static const struct option options[] = {
                {"profile", required_argument, NULL, OPT_PROFILE},
                {"set", required_argument, NULL, OPT_SET},
                {"prior-referrals", required_argument, NULL, OPT_PRIOR_REFERRALS},
                {"prior-qualifying", required_argument, NULL, OPT_PRIOR_QUALIFYING},
                {"explain", no_argument, NULL, OPT_EXPLAIN},
                {"format", required_argument, NULL, OPT_FORMAT},
                {NULL, 0, NULL, 0},
        };
        ctl c;
        ctl_init(&c, "decide", usage_text);
        const char *profile_name = NULL;
        const char *sets[32];
        size_t n_sets = 0;
        bool want_explain = false;
        input_format format = FORMAT_AUTO;
        rules_history history = {0};
        int o;
        while ((o = ctl_getopt(&c, argc, argv, options)) != -1) {
                switch (o) {
                case OPT_PROFILE: profile_name = optarg; break;
                case OPT_SET:
                        if (n_sets >= sizeof sets / sizeof sets[0])
                                return ctl_usage_error(&c, "too many --set options");
                        sets[n_sets++] = optarg;
                        break;
                case OPT_PRIOR_REFERRALS:
                        if (parse_count(optarg, &history.prior_referrals) < 0)
                                return ctl_usage_error(&c, "--prior-referrals: not a count: %s", optarg);
                        break;
                case OPT_PRIOR_QUALIFYING:
                        if (parse_count(optarg, &history.prior_qualifying) < 0)
                                return ctl_usage_error(&c, "--prior-qualifying: not a count: %s", optarg);
                        break;
                case OPT_EXPLAIN: want_explain = true; break;
                case OPT_FORMAT:
                        if (strcmp(optarg, "auto") == 0)
                                format = FORMAT_AUTO;
                        else if (strcmp(optarg, "text") == 0)
                                format = FORMAT_TEXT;
                        else if (strcmp(optarg, "binary") == 0)
                                format = FORMAT_BINARY;
                        else
                                return ctl_usage_error(&c, "--format: auto, text or binary, not %s", optarg);
                        break;
                case CTL_OPT_HELP: return CTL_EXIT_OK;
                default: return CTL_EXIT_USAGE;
                }
        }
        if (c.database || c.bootstrap)
                return ctl_usage_error(&c, "--database and --bootstrap are not for decide: it reads no database");
        if (argc - optind > 1)
                return ctl_usage_error(&c, "at most one FILE");
        if (history.prior_qualifying > history.prior_referrals)
                return ctl_usage_error(&c, "--prior-qualifying (%u) exceeds --prior-referrals (%u)",
                                       history.prior_qualifying, history.prior_referrals);
        if (c.config_path && profile_name)
                return ctl_usage_error(&c, "--profile or --config, not both: the configuration names the profiles");

        /* --set keys and values checked now, on a copy of a profile, before any input is read. */
        const profile *check = profiles_find(profile_name ? profile_name : PROFILE_DEFAULT);
        if (check) {
                profile scratch = *check;
                for (size_t i = 0; i < n_sets; i++) {
                        char key[64];
                        const char *eq = strchr(sets[i], '=');
                        if (!eq || (size_t)(eq - sets[i]) >= sizeof key)
                                return ctl_usage_error(&c, "--set: expected KEY=VALUE");
                        memcpy(key, sets[i], (size_t)(eq - sets[i]));
                        key[eq - sets[i]] = '\0';
                        int r = profile_set(&scratch, key, eq + 1);
                        if (r == -ENOENT)
                                return ctl_usage_error(&c, "--set: unknown profile parameter '%s'", key);
                        if (r < 0)
                                return ctl_usage_error(&c, "--set: bad value for %s", key);
                }
        }

        int ret = CTL_EXIT_FAILURE;
        uint8_t *buf = NULL;
        codec_referral *ref = NULL;
        size_t max_bytes = DECIDE_MAX_BYTES;
        /* Only the file given: the decision must not depend on what happens to lie in /etc. */
        if (c.config_path) {
                if (ctl_load_config(&c) < 0)
                        goto out;
                max_bytes = c.cfg->max_message_bytes;
        } else if (!profiles_find(profile_name ? profile_name : PROFILE_DEFAULT)) {
                fprintf(stderr, "allvarsctl decide: unknown profile '%s' (known: ", profile_name);
                list_profiles(stderr);
                fputs(")\n", stderr);
                ret = CTL_EXIT_USAGE;
                goto out;
        }

        const char *path = optind < argc ? argv[optind] : "-";
        FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rbe");
        if (!f) {
                ctl_fail(&c, "%s: %s", path, strerror(errno));
                goto out;
        }
        size_t len = 0;
        int r = read_all(f, max_bytes, &buf, &len);
        if (f != stdin)
                fclose(f);
        if (r < 0) {
                ctl_fail(&c, "%s: %s", path, strerror(-r));
                goto out;
        }
        ref = read_referral(&c, buf, len, format, max_bytes);
        if (!ref)
                goto out;

        /* The profile: the daemon's for this district, or the one named, with --set on top. */
        const Allvarssamtal__V1__PoliceReferral *msg = codec_referral_msg(ref);
        profile p = c.cfg ? *config_profile_for(c.cfg, msg->district)
                          : *profiles_find(profile_name ? profile_name : PROFILE_DEFAULT);
        for (size_t i = 0; i < n_sets; i++) {
                const char *eq = strchr(sets[i], '=');
                char key[64];
                snprintf(key, sizeof key, "%.*s", (int)(eq - sets[i]), sets[i]);
                if (profile_set(&p, key, eq + 1) < 0) {
                        ret = ctl_usage_error(&c, "--set: bad value for %s under the district's profile", key);
                        goto out;
                }
        }

        usec_t now = clock_realtime();
        if (c.now_arg)
                (void)clock_parse_rfc3339(c.now_arg, &now);
        decision d;
        rules_decide(&p, msg, &history, now, &d);
        if (c.json)
                print_json(&d, &p, want_explain);
        else
                print_lines(&d, &p, want_explain);
        if (fflush(stdout) != 0 || ferror(stdout)) {
                ctl_fail(&c, "writing the decision: %s", strerror(errno));
                goto out;
        }
        ret = CTL_EXIT_OK;
out:
        codec_referral_free(ref);
        free(buf);
        ctl_done(&c);
        return ret;
}
