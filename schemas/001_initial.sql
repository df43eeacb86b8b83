-- allvarsd schema, version 1.
-- Applied by `allvarsd --migrate` as the migration owner, in one transaction,
-- recorded in allvarsd.schema_migrations. Personal data lives only in the
-- tables marked PERSONAL, so that the retention purge can remove it and keep
-- the pseudonymous rows for statistics and the audit skeleton.

CREATE SCHEMA IF NOT EXISTS allvarsd;
SET LOCAL search_path = allvarsd;

-- One row per person ever referred, keyed by HMAC-SHA-256(pepper, identity number).
-- Locked FOR UPDATE while a referral of that person is decided, so that "first
-- time" holds when two instances decide two referrals of one person at once.
CREATE TABLE persons (
        person_key      bytea PRIMARY KEY CHECK (length(person_key) = 32),
        first_seen_at   timestamptz NOT NULL DEFAULT now()
);

-- One row per referral accepted (decoded and valid); the idempotency key is
-- the police's referral_id. Pseudonymous: kept after the purge.
CREATE TABLE referrals (
        referral_id     text PRIMARY KEY,
        case_id         uuid NOT NULL UNIQUE,          -- uuid5 of referral_id, also for NOT_ELIGIBLE
        -- persons.person_key, or NULL when the identity number was absent or
        -- invalid. No foreign key here, nor on referral_personal and decisions
        -- below: only the batch writes these rows, in the transaction that
        -- writes their parents, and the checks cost a lookup and a row lock
        -- per row (about an eighth of the batch's server time, measured).
        person_key      bytea,
        marks           integer NOT NULL,              -- MARK_* (profiles.h): what the referral is about
        district        text NOT NULL,
        reported_at     timestamptz NOT NULL,
        incident_at     timestamptz,
        feedback_requested boolean NOT NULL,
        police_case_number text NOT NULL DEFAULT '',
        reporting_unit  text NOT NULL DEFAULT '',
        source_topic    text NOT NULL,
        source_partition integer NOT NULL,
        source_offset   bigint NOT NULL,
        received_at     timestamptz NOT NULL,
        purged_at       timestamptz
);
-- The history read of the batch: a person's earlier referrals and their marks.
CREATE INDEX referrals_person ON referrals (person_key) WHERE person_key IS NOT NULL;

-- PERSONAL: what identifies the child, and the raw message. Removed by the purge.
CREATE TABLE referral_personal (
        referral_id     text PRIMARY KEY,              -- referrals.referral_id
        identity_number text NOT NULL DEFAULT '',
        birth_date      text NOT NULL DEFAULT '',
        given_name      text NOT NULL DEFAULT '',
        family_name     text NOT NULL DEFAULT '',
        narrative       text NOT NULL DEFAULT '',
        payload         bytea NOT NULL                 -- the PoliceReferral exactly as consumed
);

-- The rules engine's recommendation for each referral. Pseudonymous.
CREATE TABLE decisions (
        referral_id     text PRIMARY KEY,              -- referrals.referral_id
        outcome         text NOT NULL CHECK (outcome IN ('ELIGIBLE','NOT_ELIGIBLE','DEFERRED','MANUAL_REVIEW')),
        reasons         text NOT NULL,                 -- comma-separated reason codes
        flags           text NOT NULL,                 -- comma-separated flag codes
        age             integer,                       -- NULL when unknown
        deadline        timestamptz,
        deadline_kind   text,                          -- CONVERSATION | SUMMONS
        protective_assessment_due timestamptz,
        profile_name    text NOT NULL,
        profile_version integer NOT NULL,
        profile_params  text NOT NULL,                 -- every effective parameter (profile_describe)
        prior_referrals integer NOT NULL,
        prior_qualifying integer NOT NULL,
        decided_at      timestamptz NOT NULL
);

-- A case is opened by every decision that is not NOT_ELIGIBLE (DOMAIN.md).
CREATE TABLE cases (
        case_id         uuid PRIMARY KEY,
        referral_id     text NOT NULL UNIQUE REFERENCES referrals,
        district        text NOT NULL,
        state           text NOT NULL,                 -- lifecycle.c: the state machine
        outcome         text NOT NULL,                 -- the current recommendation (overrides win)
        profile_name    text NOT NULL,
        limit_seconds   bigint NOT NULL,               -- the profile's limit, for AT_RISK at 75 %
        deadline        timestamptz,                   -- NULL while deferred
        deadline_kind   text,
        protective_assessment_due timestamptz,         -- NULL when none is due or it was recorded
        awaiting_assessment boolean NOT NULL DEFAULT false,
        awaiting_clearance  boolean NOT NULL DEFAULT false,
        awaiting_contact    boolean NOT NULL DEFAULT false,
        scheduled_at    timestamptz,
        police_attending boolean NOT NULL DEFAULT false,
        held_at         timestamptz,
        closed_at       timestamptz,
        feedback_requested boolean NOT NULL,
        created_at      timestamptz NOT NULL,
        updated_at      timestamptz NOT NULL,
        revision        integer NOT NULL DEFAULT 1
);
CREATE INDEX cases_open_deadline ON cases (deadline) WHERE closed_at IS NULL;
CREATE INDEX cases_state ON cases (state, district);

-- PERSONAL: guardians' contact details supplied later by the police (or the referral).
CREATE TABLE case_contacts (
        case_id         uuid NOT NULL REFERENCES cases,
        ordinal         integer NOT NULL,
        name            text NOT NULL DEFAULT '',
        phone           text NOT NULL DEFAULT '',
        email           text NOT NULL DEFAULT '',
        postal_address  text NOT NULL DEFAULT '',
        supplied_at     timestamptz NOT NULL,
        PRIMARY KEY (case_id, ordinal)
);

-- Each deadline alert once per case, whatever restarts or instances.
CREATE TABLE case_alerts (
        case_id         uuid NOT NULL REFERENCES cases,
        kind            text NOT NULL CHECK (kind IN ('AT_RISK','MISSED','PROTECTIVE_ASSESSMENT_OVERDUE')),
        due_at          timestamptz NOT NULL,
        raised_at       timestamptz NOT NULL,
        PRIMARY KEY (case_id, kind, due_at)
);

-- Outcome events applied, by their event id (effectively once).
CREATE TABLE outcome_events (
        event_id        text PRIMARY KEY,
        case_id         uuid NOT NULL,
        kind            text NOT NULL,
        occurred_at     timestamptz NOT NULL,
        applied_at      timestamptz NOT NULL,
        source_topic    text NOT NULL,
        source_partition integer NOT NULL,
        source_offset   bigint NOT NULL
);

-- The audit trail: append only. who = actor kind + name. before/after are
-- short "key=value;..." descriptions of the case state, never personal data.
CREATE TABLE audit (
        id              bigserial PRIMARY KEY,
        case_id         uuid,
        referral_id     text,
        at              timestamptz NOT NULL,
        actor_kind      text NOT NULL,                 -- DAEMON | POLICE | BOOKING_SERVICE | SOCIAL_WORKER
        actor_name      text NOT NULL DEFAULT '',
        action          text NOT NULL,                 -- DECIDED, SCHEDULED, OVERRIDDEN, PURGED, ...
        before          text NOT NULL DEFAULT '',
        after           text NOT NULL DEFAULT '',
        detail          text NOT NULL DEFAULT ''       -- an override's reason (PERSONAL-free by rule: cleared by the purge)
);
CREATE INDEX audit_case ON audit (case_id, id);

-- The transactional outbox. Rows are written in the transaction that decides;
-- the relay publishes unsent rows in id order per key and marks them sent on
-- the delivery report. Ids are not assumed gap-free or commit-ordered.
CREATE TABLE outbox (
        id              bigserial PRIMARY KEY,
        event_id        uuid NOT NULL UNIQUE,          -- ce_id; stable across retries
        topic           text NOT NULL,
        key             text NOT NULL,                 -- the case id (ordering per case)
        ce_type         text NOT NULL,                 -- e.g. se.allvarssamtal.v1.SchedulingRequest
        ce_time         timestamptz NOT NULL,
        payload         bytea NOT NULL,                -- PERSONAL for scheduling requests: purged after sending
        created_at      timestamptz NOT NULL DEFAULT now(),
        sent_at         timestamptz
);
CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;

-- Consumed positions: the next offset to read per partition, written in the
-- batch transaction with a compare-and-set. The source of truth on assignment.
CREATE TABLE consumer_offsets (
        consumer_group  text NOT NULL,
        topic           text NOT NULL,
        partition       integer NOT NULL,
        next_offset     bigint NOT NULL,
        updated_at      timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (consumer_group, topic, partition)
);

-- Messages that could not be accepted. PERSONAL: payload (purged with the rest).
CREATE TABLE dead_letters (
        id              bigserial PRIMARY KEY,
        event_id        uuid NOT NULL UNIQUE,
        source_topic    text NOT NULL,
        source_partition integer NOT NULL,
        source_offset   bigint NOT NULL,
        reason          text NOT NULL,
        detail          text NOT NULL,
        payload         bytea,
        received_at     timestamptz NOT NULL,
        replayed_at     timestamptz,
        UNIQUE (source_topic, source_partition, source_offset)
);

-- Runs of the retention purge, for the audit.
CREATE TABLE purges (
        id              bigserial PRIMARY KEY,
        at              timestamptz NOT NULL,
        referrals_purged integer NOT NULL,
        cases_purged    integer NOT NULL,
        dead_letters_purged integer NOT NULL,
        outbox_purged   integer NOT NULL
);
