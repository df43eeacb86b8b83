/* The tables an outcome event touches (store_outcomes.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_outcomes.h"

enum {
        REF_ID, REF_DISTRICT, REF_CASE_NUMBER, REF_UNIT, REF_FEEDBACK, REF_RECEIVED,
        REF_D_OUTCOME, REF_D_FLAGS, REF_D_AGE, REF_D_PROFILE, REF_D_PAD, REF_DUTY,
};
enum {
        CASE_C_STATE, CASE_C_OUTCOME, CASE_C_PROFILE, CASE_C_LIMIT, CASE_C_DEADLINE, CASE_C_DK, CASE_C_PAD,
        CASE_C_AW_ASSESSMENT, CASE_C_AW_CLEARANCE, CASE_C_AW_CONTACT, CASE_C_SCHEDULED, CASE_C_POLICE,
        CASE_C_HELD, CASE_C_CLOSED, CASE_C_FEEDBACK, CASE_C_REVISION,
};

const pg_statement store_outcome_statements[] = {
        { "out_event_insert",
          "INSERT INTO allvarsd.outcome_events (event_id, case_id, kind, occurred_at, applied_at,"
          " source_topic, source_partition, source_offset, participants, follow_up)"
          " VALUES ($1::text, $2::text::uuid, $3::text, $4::timestamptz, $5::timestamptz, $6::text, $7::int4,"
          " $8::int8, string_to_array($9::text, ','), string_to_array($10::text, ','))"
          " ON CONFLICT (event_id) DO NOTHING" },
        { "out_event_delete", "DELETE FROM allvarsd.outcome_events WHERE event_id = $1::text" },
        { "out_referral_lock",
          "SELECT r.referral_id, r.district, r.police_case_number, r.reporting_unit, r.feedback_requested,"
          "       " PG_SQL_USEC("r.received_at") ","
          "       d.outcome, d.flags, d.age, d.profile_name, " PG_SQL_USEC("d.protective_assessment_due") ","
          "       CASE WHEN a.case_id IS NULL THEN '' WHEN a.recorded_at IS NULL THEN 'P' ELSE 'R' END"
          "  FROM allvarsd.referrals r LEFT JOIN allvarsd.decisions d ON d.referral_id = r.referral_id"
          "  LEFT JOIN allvarsd.assessment_duties a ON a.case_id = r.case_id"
          " WHERE r.case_id = $1::text::uuid"
          "   FOR NO KEY UPDATE OF r" },
        { "out_case_lock",
          "SELECT state, outcome, profile_name, limit_seconds, " PG_SQL_USEC("deadline") ","
          "       coalesce(deadline_kind, ''), " PG_SQL_USEC("protective_assessment_due") ","
          "       awaiting_assessment, awaiting_clearance, awaiting_contact, " PG_SQL_USEC("scheduled_at") ","
          "       police_attending, " PG_SQL_USEC("held_at") ", " PG_SQL_USEC("closed_at") ", feedback_requested,"
          "       revision"
          "  FROM allvarsd.cases WHERE case_id = $1::text::uuid FOR UPDATE" },
        { "out_case_update",
          "UPDATE allvarsd.cases SET state = $2::text, outcome = $3::text, deadline = $4::timestamptz,"
          " deadline_kind = $5::text, protective_assessment_due = $6::timestamptz, awaiting_assessment = $7::bool,"
          " awaiting_clearance = $8::bool, awaiting_contact = $9::bool, scheduled_at = $10::timestamptz,"
          " police_attending = $11::bool, held_at = $12::timestamptz, closed_at = $13::timestamptz,"
          /* A step back of the wall clock never moves a case's last change before
           * an earlier one (tests/faults/08-clock-step.sh). */
          " updated_at = greatest($14::timestamptz, updated_at), revision = revision + 1"
          " WHERE case_id = $1::text::uuid" },
        { "out_case_insert",
          "INSERT INTO allvarsd.cases (case_id, referral_id, district, state, outcome, profile_name,"
          " limit_seconds, deadline, deadline_kind, protective_assessment_due, awaiting_assessment,"
          " awaiting_clearance, awaiting_contact, scheduled_at, police_attending, held_at, closed_at,"
          " feedback_requested, created_at, updated_at)"
          " VALUES ($1::text::uuid, $2::text, $3::text, $4::text, $5::text, $6::text, $7::int8, $8::timestamptz,"
          " $9::text, $10::timestamptz, $11::bool, $12::bool, $13::bool, $14::timestamptz, $15::bool,"
          " $16::timestamptz, $17::timestamptz, $18::bool, $19::timestamptz, $19::timestamptz)" },
        /* docs/domain.md "Protective assessment": a referral without a case. */
        { "out_duty_record",
          "UPDATE allvarsd.assessment_duties SET recorded_at = $2::timestamptz"
          " WHERE case_id = $1::text::uuid AND recorded_at IS NULL" },
        { "out_personal",
          "SELECT payload FROM allvarsd.referral_personal WHERE referral_id = $1::text" },
        { "out_contacts",
          "SELECT ordinal, name, phone, email, postal_address FROM allvarsd.case_contacts"
          " WHERE case_id = $1::text::uuid ORDER BY ordinal" },
        { "out_contacts_upsert",
          "INSERT INTO allvarsd.case_contacts (case_id, ordinal, name, phone, email, postal_address, supplied_at)"
          " SELECT $1::text::uuid, c.ordinal, c.name, c.phone, c.email, c.address, c.at"
          "   FROM unnest($2::int4[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[])"
          "        AS c(ordinal, name, phone, email, address, at)"
          " ON CONFLICT (case_id, ordinal) DO UPDATE SET name = excluded.name, phone = excluded.phone,"
          "   email = excluded.email, postal_address = excluded.postal_address,"
          "   supplied_at = excluded.supplied_at" },
        { NULL, NULL },
};

int store_outcome_event_claim(pg_session *s, const char *event_id, const char *case_id, const char *kind,
                              usec_t occurred_at, usec_t now, const char *topic, int32_t partition, int64_t offset,
                              const char *participants, const char *follow_up, bool *ret_new) {
        pg_params p = { 0 };
        pg_params_text(&p, event_id);
        pg_params_text(&p, case_id);
        pg_params_text(&p, kind);
        pg_params_ts(&p, occurred_at);
        pg_params_ts(&p, now);
        pg_params_text(&p, topic);
        pg_params_int4(&p, partition);
        pg_params_int8(&p, offset);
        pg_params_text(&p, participants);
        pg_params_text(&p, follow_up);
        PGresult *res = NULL;
        int r = pg_exec(s, "out_event_insert", &p, 0, &res);
        if (r < 0)
                return r;
        *ret_new = pg_cmd_rows(res) > 0;
        PQclear(res);
        return 0;
}

int store_outcome_event_unclaim(pg_session *s, const char *event_id) {
        pg_params p = { 0 };
        pg_params_text(&p, event_id);
        return pg_exec(s, "out_event_delete", &p, 0, NULL);
}

static int lock_one(pg_session *s, const char *stmt, const char *key, PGresult **ret) {
        pg_params p = { 0 };
        pg_params_text(&p, key);
        int r = pg_exec(s, stmt, &p, 0, ret);
        if (r < 0)
                return r;
        return PQntuples(*ret) == 1;
}

int store_referral_lock(pg_session *s, const char *case_id, stored_referral *ret) {
        *ret = (stored_referral){ .age = -1 };
        int r = lock_one(s, "out_referral_lock", case_id, &ret->res);
        if (r <= 0)
                return r;
        const PGresult *x = ret->res;
        ret->referral_id = PQgetvalue(x, 0, REF_ID);
        ret->district = PQgetvalue(x, 0, REF_DISTRICT);
        ret->police_case_number = PQgetvalue(x, 0, REF_CASE_NUMBER);
        ret->reporting_unit = PQgetvalue(x, 0, REF_UNIT);
        ret->feedback_requested = pg_field_bool(x, 0, REF_FEEDBACK);
        ret->received_at = pg_field_usec(x, 0, REF_RECEIVED);
        ret->decided = !PQgetisnull(x, 0, REF_D_OUTCOME);
        ret->outcome = PQgetvalue(x, 0, REF_D_OUTCOME);
        ret->flags = PQgetvalue(x, 0, REF_D_FLAGS);
        ret->profile_name = PQgetvalue(x, 0, REF_D_PROFILE);
        ret->age = PQgetisnull(x, 0, REF_D_AGE) ? -1 : (int)pg_field_int(x, 0, REF_D_AGE);
        ret->protective_assessment_due = pg_field_usec(x, 0, REF_D_PAD);
        const char *duty = PQgetvalue(x, 0, REF_DUTY);
        ret->duty_pending = duty[0] == 'P';
        ret->duty_recorded = duty[0] == 'R';
        return 1;
}

int store_duty_record(pg_session *s, const char *case_id, usec_t at) {
        pg_params p = { 0 };
        pg_params_text(&p, case_id);
        pg_params_ts(&p, at);
        return pg_exec(s, "out_duty_record", &p, 0, NULL);
}

void stored_referral_free(stored_referral *r) {
        PQclear(r->res);
        *r = (stored_referral){ .age = -1 };
}

int store_case_lock(pg_session *s, const char *case_id, stored_case *ret) {
        *ret = (stored_case){ 0 };
        int r = lock_one(s, "out_case_lock", case_id, &ret->res);
        if (r <= 0)
                return r;
        const PGresult *x = ret->res;
        ret->state = PQgetvalue(x, 0, CASE_C_STATE);
        ret->outcome = PQgetvalue(x, 0, CASE_C_OUTCOME);
        ret->profile_name = PQgetvalue(x, 0, CASE_C_PROFILE);
        ret->limit_seconds = pg_field_int(x, 0, CASE_C_LIMIT);
        ret->deadline = pg_field_usec(x, 0, CASE_C_DEADLINE);
        ret->deadline_kind = PQgetvalue(x, 0, CASE_C_DK);
        ret->protective_assessment_due = pg_field_usec(x, 0, CASE_C_PAD);
        ret->awaiting_assessment = pg_field_bool(x, 0, CASE_C_AW_ASSESSMENT);
        ret->awaiting_clearance = pg_field_bool(x, 0, CASE_C_AW_CLEARANCE);
        ret->awaiting_contact = pg_field_bool(x, 0, CASE_C_AW_CONTACT);
        ret->scheduled_at = pg_field_usec(x, 0, CASE_C_SCHEDULED);
        ret->police_attending = pg_field_bool(x, 0, CASE_C_POLICE);
        ret->held_at = pg_field_usec(x, 0, CASE_C_HELD);
        ret->closed_at = pg_field_usec(x, 0, CASE_C_CLOSED);
        ret->feedback_requested = pg_field_bool(x, 0, CASE_C_FEEDBACK);
        ret->revision = pg_field_int(x, 0, CASE_C_REVISION);
        return 1;
}

void stored_case_free(stored_case *c) {
        PQclear(c->res);
        *c = (stored_case){ 0 };
}

int store_case_write(pg_session *s, const char *case_id, const case_state *a, const case_insert *insert,
                     usec_t now) {
        pg_params p = { 0 };
        pg_params_text(&p, case_id);
        if (insert) {
                pg_params_text(&p, insert->referral_id);
                pg_params_text(&p, insert->district);
        }
        pg_params_text(&p, case_state_code_name(a->state));
        pg_params_text(&p, decision_outcome_code(a->outcome));
        if (insert) {
                pg_params_text(&p, insert->profile_name);
                pg_params_int8(&p, insert->limit_seconds);
        }
        pg_params_ts_or_null(&p, a->deadline);
        pg_params_text_or_null(&p, a->deadline ? deadline_kind_code(a->deadline_kind) : "");
        pg_params_ts_or_null(&p, a->protective_assessment_due);
        pg_params_bool(&p, a->awaiting_assessment);
        pg_params_bool(&p, a->awaiting_clearance);
        pg_params_bool(&p, a->awaiting_contact);
        pg_params_ts_or_null(&p, a->scheduled_at);
        pg_params_bool(&p, a->police_attending);
        pg_params_ts_or_null(&p, a->held_at);
        pg_params_ts_or_null(&p, a->closed_at);
        if (insert)
                pg_params_bool(&p, insert->feedback_requested);
        pg_params_ts(&p, now);
        const char *stmt = insert ? "out_case_insert" : "out_case_update";
        PGresult *res = NULL;
        int r = pg_exec(s, stmt, &p, 0, &res);
        if (r < 0)
                return r;
        unsigned rows = pg_cmd_rows(res);
        PQclear(res);
        if (rows != 1)
                return pg_fail(s, -EIO, "%s: %u rows", stmt, rows);
        return 0;
}

int store_referral_personal(pg_session *s, const char *referral_id, stored_personal *ret) {
        *ret = (stored_personal){ 0 };
        pg_params p = { 0 };
        pg_params_text(&p, referral_id);
        /* binary results: the payload raw */
        int r = pg_exec(s, "out_personal", &p, 1, &ret->res);
        if (r < 0)
                return r;
        const PGresult *x = ret->res;
        if (PQntuples(x) == 1 && !PQgetisnull(x, 0, 0) && PQgetlength(x, 0, 0) > 0) {
                ret->payload = PQgetvalue(x, 0, 0);
                ret->len = (size_t)PQgetlength(x, 0, 0);
        }
        return 0;
}

void stored_personal_free(stored_personal *p) {
        PQclear(p->res);
        *p = (stored_personal){ 0 };
}

int store_case_contacts(pg_session *s, const char *case_id, contacts *c) {
        pg_params p = { 0 };
        pg_params_text(&p, case_id);
        PGresult *res = NULL;
        int r = pg_exec(s, "out_contacts", &p, 0, &res);
        for (int i = 0; r >= 0 && i < PQntuples(res); i++)
                r = contacts_add(c, (int32_t)pg_field_int(res, i, 0), PQgetvalue(res, i, 1), PQgetvalue(res, i, 2),
                                 PQgetvalue(res, i, 3), PQgetvalue(res, i, 4), 0, false);
        PQclear(res);
        if (r == -ENOMEM)
                return pg_fail(s, r, "case contacts: out of memory");
        return r;
}

int store_case_contacts_write(pg_session *s, const char *case_id, const contacts *c, usec_t now) {
        pg_arr a[6] = { 0 };
        static const uint32_t oids[6] = { PG_OID_INT4, PG_OID_TEXT, PG_OID_TEXT,
                                          PG_OID_TEXT, PG_OID_TEXT, PG_OID_TIMESTAMPTZ };
        for (size_t i = 0; i < 6; i++)
                pg_arr_reset(&a[i], oids[i]);
        unsigned n = 0;
        for (size_t i = 0; i < c->n; i++) {
                const contact *k = &c->v[i];
                if (!k->dirty)
                        continue;
                pg_arr_int4(&a[0], k->ordinal);
                pg_arr_text(&a[1], k->name);
                pg_arr_text(&a[2], k->phone);
                pg_arr_text(&a[3], k->email);
                pg_arr_text(&a[4], k->address);
                pg_arr_ts(&a[5], k->supplied_at ? k->supplied_at : now);
                n++;
        }
        int r = 0;
        if (n > 0) {
                pg_params p = { 0 };
                pg_params_text(&p, case_id);
                for (size_t i = 0; i < 6; i++)
                        if (pg_params_arr(&p, &a[i]) < 0)
                                r = -ENOMEM;
                r = r < 0 ? pg_fail(s, r, "case contacts: out of memory") : pg_exec(s, "out_contacts_upsert", &p, 0, NULL);
        }
        for (size_t i = 0; i < 6; i++)
                pg_arr_free(&a[i]);
        return r;
}
