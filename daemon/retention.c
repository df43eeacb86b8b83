/* Retention (gallring; DOMAIN.md "Known realities", issue 5 "Retention"). A
 * social services file is deleted five years after its last entry (SoL 12 kap.
 * 1-2 §§, 2001:453); allvarsd removes the personal data on its own schedule:
 *   - of cases closed before now - retention.closed_case_days;
 *   - of NOT_ELIGIBLE referrals (no case) decided before now - retention.not_eligible_days;
 *   - the raw payload of dead letters received before now - retention.closed_case_days.
 * Personal data is what schemas/001_initial.sql marks PERSONAL: referral_personal
 * (identity number, names, narrative, the raw referral), case_contacts, dead
 * letters' payloads, and audit.detail (an override's reason may name people).
 * The pseudonymous rows (referrals, decisions, cases, outcome_events, alerts,
 * the audit skeleton, outbox_sent) stay for statistics. The payloads of
 * SchedulingRequest outbox rows (names, contacts) are not the purge's: a
 * delivered row leaves the outbox and its record in outbox_sent has no payload
 * (schemas/004_outbox_sent.sql), and an unsent one is never touched, the relay
 * still has to publish it. One transaction; each purged referral gets an audit
 * row PURGED, each run a purges row (outbox_purged 0: nothing left to clear). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "retention.h"
#include "store_internal.h"

#define SQL_TS(p) "(timestamptz 'epoch' + (" p ")::bigint * interval '1 microsecond')"

/* $1 now, $2 cutoff for closed cases, $3 cutoff for NOT_ELIGIBLE referrals.
 * The UPDATE of purged_at picks the referrals and locks them: a concurrent run
 * waits, re-checks purged_at IS NULL on the new row version and skips them.
 * Every other step refers to the CTE `v`, i.e. exactly this run's referrals. */
static const char SQL_PURGE[] =
        "WITH victims AS ("
        "  UPDATE allvarsd.referrals r SET purged_at = " SQL_TS("$1")
        "   WHERE r.purged_at IS NULL"
        "     AND (EXISTS (SELECT 1 FROM allvarsd.cases c"
        "                   WHERE c.referral_id = r.referral_id AND c.closed_at < " SQL_TS("$2") ")"
        "          OR (NOT EXISTS (SELECT 1 FROM allvarsd.cases c WHERE c.referral_id = r.referral_id)"
        "              AND EXISTS (SELECT 1 FROM allvarsd.decisions d"
        "                           WHERE d.referral_id = r.referral_id AND d.outcome = 'NOT_ELIGIBLE'"
        "                             AND d.decided_at < " SQL_TS("$3") ")))"
        "  RETURNING r.referral_id, r.case_id"
        "), v AS ("
        "  SELECT victims.referral_id, coalesce(c.case_id, victims.case_id) AS case_id, c.case_id IS NOT NULL AS has_case,"
        "         coalesce(c.state, 'NOT_ELIGIBLE') AS state"
        "    FROM victims LEFT JOIN allvarsd.cases c ON c.referral_id = victims.referral_id"
        "), personal AS ("
        "  DELETE FROM allvarsd.referral_personal p WHERE p.referral_id IN (SELECT referral_id FROM v)"
        "  RETURNING 1"
        "), contacts AS ("
        "  DELETE FROM allvarsd.case_contacts cc WHERE cc.case_id IN (SELECT case_id FROM v)"
        "  RETURNING 1"
        "), details AS ("
        "  UPDATE allvarsd.audit a SET detail = ''"
        "   WHERE a.detail <> ''"
        "     AND (a.case_id IN (SELECT case_id FROM v) OR a.referral_id IN (SELECT referral_id FROM v))"
        "  RETURNING 1"
        "), audited AS ("
        "  INSERT INTO allvarsd.audit (case_id, referral_id, at, actor_kind, action, before, after)"
        "  SELECT v.case_id, v.referral_id, " SQL_TS("$1") ", 'DAEMON', 'PURGED', 'state=' || v.state,"
        "         'state=' || v.state || ';personal_data=purged'"
        "    FROM v ORDER BY v.referral_id"
        "  RETURNING 1"
        ")"
        " SELECT (SELECT count(*) FROM v), (SELECT count(*) FROM v WHERE has_case),"
        "        (SELECT count(*) FROM personal), (SELECT count(*) FROM contacts),"
        "        (SELECT count(*) FROM details), (SELECT count(*) FROM audited)";

static const char SQL_PURGE_DEAD_LETTERS[] =
        "UPDATE allvarsd.dead_letters SET payload = NULL"
        " WHERE payload IS NOT NULL AND received_at < " SQL_TS("$1");

static const char SQL_PURGES_ROW[] =
        "INSERT INTO allvarsd.purges (at, referrals_purged, cases_purged, dead_letters_purged, outbox_purged)"
        " VALUES (" SQL_TS("$1") ", $2, $3, $4, $5)";

static unsigned cmd_rows(PGresult *res) {
        unsigned n = (unsigned)strtoul(PQcmdTuples(res), NULL, 10);
        PQclear(res);
        return n;
}

int retention_run(store *s, const config *cfg, usec_t now, retention_result *ret) {
        retention_result rr = {0};
        PGresult *res = NULL;
        PGconn *pg = NULL;
        char now_s[24], closed_s[24], ne_s[24];
        int r = store_job_begin(s, &pg);
        if (r < 0)
                return r;

        snprintf(now_s, sizeof now_s, "%lld", (long long)now);
        snprintf(closed_s, sizeof closed_s, "%lld",
                 (long long)(now - (usec_t)cfg->retention_closed_days * USEC_PER_DAY));
        snprintf(ne_s, sizeof ne_s, "%lld",
                 (long long)(now - (usec_t)cfg->retention_not_eligible_days * USEC_PER_DAY));

        const char *purge_params[] = {now_s, closed_s, ne_s};
        r = store_job_exec(pg, SQL_PURGE, 3, purge_params, PGRES_TUPLES_OK, &res);
        if (r < 0)
                goto fail;
        rr.referrals = (unsigned)strtoul(PQgetvalue(res, 0, 0), NULL, 10);
        rr.cases = (unsigned)strtoul(PQgetvalue(res, 0, 1), NULL, 10);
        PQclear(res);
        res = NULL;

        const char *dl_params[] = {closed_s};
        r = store_job_exec(pg, SQL_PURGE_DEAD_LETTERS, 1, dl_params, PGRES_COMMAND_OK, &res);
        if (r < 0)
                goto fail;
        rr.dead_letters = cmd_rows(res);
        res = NULL;

        /* The purge is itself audited (SoL 12 kap.): one row per run, also when it found nothing.
         * rr.outbox_rows stays 0: no outbox payload is the purge's since schema version 3. */
        char n_ref[16], n_case[16], n_dl[16], n_ob[16];
        snprintf(n_ref, sizeof n_ref, "%u", rr.referrals);
        snprintf(n_case, sizeof n_case, "%u", rr.cases);
        snprintf(n_dl, sizeof n_dl, "%u", rr.dead_letters);
        snprintf(n_ob, sizeof n_ob, "%u", rr.outbox_rows);
        const char *row_params[] = {now_s, n_ref, n_case, n_dl, n_ob};
        r = store_job_exec(pg, SQL_PURGES_ROW, 5, row_params, PGRES_COMMAND_OK, NULL);
        if (r < 0)
                goto fail;

        r = store_job_exec(pg, "COMMIT", 0, NULL, PGRES_COMMAND_OK, NULL);
        if (r < 0)
                goto fail;
        if (ret)
                *ret = rr;
        return 0;

fail:
        store_rollback(s);
        return r;
}
