/* Retention (gallring; docs/domain.md "Retention"). A
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
 * row PURGED (store_rows.h), each run a purges row (outbox_purged 0: nothing
 * left to clear). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "retention.h"
#include "store_rows.h"

/* $1 now, $2 cutoff for closed cases, $3 cutoff for NOT_ELIGIBLE referrals.
 * The UPDATE of purged_at picks the referrals and locks them: a concurrent run
 * waits, re-checks purged_at IS NULL on the new row version and skips them.
 * Every other step refers to the CTE `v`, i.e. exactly this run's referrals. */
static const pg_statement retention_statements[] = {
        { "retention_purge",
        "WITH victims AS ("
        "  UPDATE allvarsd.referrals r SET purged_at = " "$1::timestamptz"
        "   WHERE r.purged_at IS NULL"
        "     AND (EXISTS (SELECT 1 FROM allvarsd.cases c"
        "                   WHERE c.case_id = r.case_id AND c.closed_at < " "$2::timestamptz" ")"
        "          OR (NOT EXISTS (SELECT 1 FROM allvarsd.cases c WHERE c.case_id = r.case_id)"
        "              AND EXISTS (SELECT 1 FROM allvarsd.decisions d"
        "                           WHERE d.referral_id = r.referral_id AND d.outcome = 'NOT_ELIGIBLE'"
        "                             AND d.decided_at < " "$3::timestamptz" ")))"
        "  RETURNING r.referral_id, r.case_id"
        "), v AS ("
        "  SELECT victims.referral_id, coalesce(c.case_id, victims.case_id) AS case_id, c.case_id IS NOT NULL AS has_case,"
        "         coalesce(c.state, 'NOT_ELIGIBLE') AS state"
        "    FROM victims LEFT JOIN allvarsd.cases c ON c.case_id = victims.case_id"
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
        ")"
        /* the purged referrals, for their audit rows (store_rows.h), and the counts */
        " SELECT v.case_id::text, v.referral_id, v.state, v.has_case,"
        "        (SELECT count(*) FROM personal), (SELECT count(*) FROM contacts), (SELECT count(*) FROM details)"
        "   FROM v ORDER BY v.referral_id" },

        { "retention_dead_letters",
          "UPDATE allvarsd.dead_letters SET payload = NULL"
        " WHERE payload IS NOT NULL AND received_at < $1::timestamptz" },

        { "retention_purges_row",
          "INSERT INTO allvarsd.purges (at, referrals_purged, cases_purged, dead_letters_purged, outbox_purged)"
        " VALUES ($1::timestamptz, $2::int4, $3::int4, $4::int4, $5::int4)" },
        { NULL, NULL },
};

int retention_run(store *st, const config *cfg, usec_t now, retention_result *ret) {
        retention_result rr = { 0 };
        pg_session *s = store_session(st);
        int r = store_rows_ready(st, retention_statements, true);
        if (r < 0)
                return r;

        usec_t closed_before = now - (usec_t)cfg->retention_closed_days * USEC_PER_DAY;
        pg_params pp = { 0 };
        pg_params_ts(&pp, now);
        pg_params_ts(&pp, closed_before);
        pg_params_ts(&pp, now - (usec_t)cfg->retention_not_eligible_days * USEC_PER_DAY);
        _cleanup_pqclear_ PGresult *purged = NULL, *dl = NULL;
        _cleanup_(store_rows_free) store_rows rows = { 0 };
        store_rows_reset(&rows);
        r = pg_exec(s, "retention_purge", &pp, 0, &purged);
        for (int i = 0; r >= 0 && i < PQntuples(purged); i++) {
                char before[64], after[96];
                snprintf(before, sizeof before, "state=%s", PQgetvalue(purged, i, 2));
                snprintf(after, sizeof after, "state=%s;personal_data=purged", PQgetvalue(purged, i, 2));
                store_rows_audit(&rows, &(audit_entry){ .case_id = PQgetvalue(purged, i, 0),
                                                        .referral_id = PQgetvalue(purged, i, 1),
                                                        .at = now,
                                                        .actor_kind = "DAEMON",
                                                        .action = "PURGED",
                                                        .before = before,
                                                        .after = after });
                rr.referrals++;
                rr.cases += pg_field_bool(purged, i, 3);
        }

        pg_params dp = { 0 };
        pg_params_ts(&dp, closed_before);
        if (r >= 0)
                r = pg_exec(s, "retention_dead_letters", &dp, 0, &dl);
        if (r >= 0)
                rr.dead_letters = pg_cmd_rows(dl);

        /* The purge is itself audited (SoL 12 kap.): one row per run, also when it found nothing.
         * rr.outbox_rows stays 0: no outbox payload is the purge's since schema version 3. */
        pg_params rp = { 0 };
        pg_params_ts(&rp, now);
        pg_params_int4(&rp, (int32_t)rr.referrals);
        pg_params_int4(&rp, (int32_t)rr.cases);
        pg_params_int4(&rp, (int32_t)rr.dead_letters);
        pg_params_int4(&rp, (int32_t)rr.outbox_rows);
        if (r >= 0)
                r = pg_exec(s, "retention_purges_row", &rp, 0, NULL);
        if (r >= 0)
                r = store_rows_write(&rows, s, now, true, NULL);
        if (r < 0) {
                store_rollback(st);
                return r;
        }
        if (ret)
                *ret = rr;
        return 0;
}
