-- Version 17: a referral's personal data stored once, as the message itself.
--
-- Until version 16 each referral_personal row held the child's identity
-- number, birth date, given and family names and the police's narrative as
-- columns, and the PoliceReferral exactly as consumed (payload), which holds
-- every one of them too. The narrative alone is 200-800 bytes: the columns
-- were about 40 % of the row, and about 14 % of the WAL the daemon wrote per
-- referral, for a copy nobody needed: the daemon reads the names back from
-- the payload it decodes anyway (daemon/outcome_batch.c), and allvarsctl
-- decodes it for the operator (daemon/ctl/case.c).
--
-- Now the row is the referral's id and the payload. read_personal_data()
-- returns the child's row with the payload (column referral) and NULL names
-- and contacts, and the guardians' rows as before; allvarsctl case --personal
-- decodes the payload and prints the same fields as before (identity number,
-- birth date, name, narrative). The read is audited as before.
--
-- The payload was validated when it was consumed (daemon/codec.c) and is
-- byte for byte what the police sent, so the columns held nothing the
-- payload does not: dropping them loses no data. The rows written before
-- this version keep the columns' bytes in their pages (a dropped column is
-- only hidden) until the retention purge deletes them or VACUUM FULL
-- referral_personal rewrites them.
--
-- Safe to run again.

SET LOCAL search_path = allvarsd;

ALTER TABLE referral_personal
        DROP COLUMN IF EXISTS identity_number,
        DROP COLUMN IF EXISTS birth_date,
        DROP COLUMN IF EXISTS given_name,
        DROP COLUMN IF EXISTS family_name,
        DROP COLUMN IF EXISTS narrative;
COMMENT ON COLUMN referral_personal.payload IS
        'PERSONAL: the allvarssamtal.v1.PoliceReferral exactly as consumed; its identity, names and narrative are read from it (schemas/017_personal_payload.sql)';

-- The function's result changes shape, so it is made again; grant_operator()
-- (schemas/006_operator_role.sql), run by grant_all() below, grants it to the
-- operator's role again.
DROP FUNCTION IF EXISTS read_personal_data(text, text);
CREATE FUNCTION read_personal_data(p_id text, p_reader text)
        RETURNS TABLE (person text, ordinal integer, name text, phone text, email text, postal_address text,
                       referral bytea)
        LANGUAGE plpgsql
        SECURITY DEFINER
        SET search_path = allvarsd, pg_temp
AS $$
DECLARE
        v_referral_id text;
        v_case_id uuid;
BEGIN
        SELECT r.referral_id, r.case_id INTO v_referral_id, v_case_id
          FROM referrals r
         WHERE r.referral_id = p_id
            OR (p_id ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' AND r.case_id = p_id::uuid)
         ORDER BY r.referral_id = p_id DESC
         LIMIT 1;
        IF NOT FOUND THEN
                RETURN;
        END IF;
        PERFORM audit_read(v_case_id, v_referral_id, p_reader, 'PERSONAL_DATA_READ', NULL);
        RETURN QUERY
                SELECT 'child'::text, 0, NULL::text, NULL::text, NULL::text, NULL::text, p.payload
                  FROM referral_personal p WHERE p.referral_id = v_referral_id
                UNION ALL
                SELECT 'guardian', c.ordinal, c.name, c.phone, c.email, c.postal_address, NULL::bytea
                  FROM case_contacts c WHERE c.case_id = v_case_id
                 ORDER BY 2;
END
$$;
REVOKE ALL ON FUNCTION read_personal_data(text, text) FROM PUBLIC;
COMMENT ON FUNCTION read_personal_data(text, text) IS
        'The child''s referral as consumed (person child, column referral) and the guardians'' contacts; audited as PERSONAL_DATA_READ';

SELECT allvarsd.grant_all();
