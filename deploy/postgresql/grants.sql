-- Least-privilege database roles for the running services (PostgreSQL only).
--
-- Two roles without LOGIN, one per service: exposure_keyserver and exposure_verification.
-- The processes that serve HTTP and run the scheduled jobs (purges included) log in as a
-- member of one of them, and so may `exposure jobs` and `exposure audit`; the migration
-- owner (the role that runs `exposure db upgrade` and owns every table) stays separate and
-- is also the role for `exposure admin ...`, which changes configuration the services only
-- read. A service role cannot migrate: run `exposure serve` with
-- EXPOSURE_MIGRATE_ON_START=false. Each role
-- gets, per table, only the statements its service's code runs there: SELECT, INSERT,
-- UPDATE or DELETE (UPDATE limited to the columns the code changes where it changes only
-- some), plus USAGE on the sequences behind the tables it inserts into. Nothing
-- else, ever: no TRUNCATE, REFERENCES or TRIGGER, no CREATE on the schema, and no ownership
-- (so no ALTER or DROP). docs/operations.md has the same matrix with the reasons.
--
-- How to run it: as the migration owner, in every service database, after every
-- `exposure db upgrade` (it is idempotent: privileges are revoked and granted afresh, so a
-- privilege removed from the list below is removed from the database too):
--
--     exposure db upgrade
--     psql "postgresql://owner@db/keyserver" -v ON_ERROR_STOP=1 -1 -f deploy/postgresql/grants.sql
--     psql "postgresql://owner@db/verification" -v ON_ERROR_STOP=1 -1 -f deploy/postgresql/grants.sql
--
-- It works on the first schema of the search_path (current_schema()), the one the
-- migrations created the tables in: for tables in another schema than "public", run it with
-- that search_path, e.g. PGOPTIONS='-c search_path=exposure'. A service's rows apply only
-- where that service keeps its data (where one of its own tables, named after it, exists),
-- so one script serves a key-server database, a verification database and a small install
-- that shares one database between both; the core tables (leases, rate_limit_windows,
-- retention_log, retention_checkpoints, sealed_keys, auditor_keys, and alembic_version,
-- which every process reads to check the schema is current) exist in every service
-- database and go to the services present there.
--
-- The role names can be changed per run (two installs on one cluster, a naming policy)
-- with the settings exposure.keyserver_role and exposure.verification_role, e.g.
-- PGOPTIONS='-c exposure.keyserver_role=ks_prod'. Creating the roles needs CREATEROLE; a
-- role that exists already is left as it is, so an owner without CREATEROLE can run the
-- script once a DBA has created the roles.
--
-- The script is one DO block (so it also runs through a driver, as tests/db/test_grants.py
-- does) and uses no psql meta-command.

DO $grants$
DECLARE
    target_schema constant text := current_schema();
    keyserver_role constant text := coalesce(
        nullif(current_setting('exposure.keyserver_role', true), ''), 'exposure_keyserver');
    verification_role constant text := coalesce(
        nullif(current_setting('exposure.verification_role', true), ''), 'exposure_verification');
    allowed constant text[] := ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE'];
    -- What each service's code does on each table. One row per service and table;
    -- privileges are a comma-separated subset of `allowed`; an UPDATE may name its only
    -- columns, space-separated: 'UPDATE(disabled_at)', 'UPDATE(a b)'.
    matrix constant text[] := ARRAY[
        -- The key server -----------------------------------------------------------------
        -- Trust (publish checks, JWKS refresh reads the list); added by `exposure admin`.
        ['keyserver', 'keyserver_health_authorities', 'SELECT'],
        -- The JWKS refresh inserts listed keys and revokes (updates) unlisted ones; the
        -- purge deletes revoked keys.
        ['keyserver', 'keyserver_health_authority_keys', 'SELECT, INSERT, UPDATE, DELETE'],
        ['keyserver', 'keyserver_authorized_apps', 'SELECT'],
        ['keyserver', 'keyserver_authorized_app_health_authorities', 'SELECT'],
        -- Publish inserts, revises (SELECT ... FOR UPDATE, then UPDATE); the export worker
        -- inserts padding keys; the purge deletes.
        ['keyserver', 'keyserver_exposures', 'SELECT, INSERT, UPDATE, DELETE'],
        -- Created on first use and by rotation (inserted, then its sealed key written),
        -- destroyed (updated) by rotation, purged.
        ['keyserver', 'keyserver_revision_keys', 'SELECT, INSERT, UPDATE, DELETE'],
        -- Export signing keys and configs are written by `exposure admin` only.
        ['keyserver', 'keyserver_signature_infos', 'SELECT'],
        ['keyserver', 'keyserver_export_configs', 'SELECT'],
        -- The batcher inserts, the worker leases and completes (updates), the purge deletes.
        ['keyserver', 'keyserver_export_batches', 'SELECT, INSERT, UPDATE, DELETE'],
        -- Written once when a batch completes, never changed; purged.
        ['keyserver', 'keyserver_export_files', 'SELECT, INSERT, DELETE'],
        -- Import sources and their keys are added by `exposure admin`; the import job
        -- records its index validators, last success and last error on the source.
        ['keyserver', 'keyserver_import_sources', 'SELECT, UPDATE'],
        ['keyserver', 'keyserver_import_source_keys', 'SELECT'],
        -- One record per file the import job handled (imported or refused), with its key
        -- counts; the purge deletes them at their deadline.
        ['keyserver', 'keyserver_import_files', 'SELECT, INSERT, UPDATE, DELETE'],
        -- Mirrors are added by `exposure admin`; the mirror job records its progress.
        ['keyserver', 'keyserver_mirrors', 'SELECT, UPDATE'],
        -- Job and index leases: taken (insert or update), released (delete).
        ['keyserver', 'leases', 'SELECT, INSERT, UPDATE, DELETE'],
        -- The key server counts nothing; its purge only clears the (empty) table.
        ['keyserver', 'rate_limit_windows', 'SELECT, DELETE'],
        -- Append-only; DELETE only for the log's own retention. Never UPDATE.
        ['keyserver', 'retention_log', 'SELECT, INSERT, DELETE'],
        ['keyserver', 'retention_checkpoints', 'SELECT, INSERT, DELETE'],
        -- Private keys and secrets, sealed: made on first use (the revision-token AAD, the
        -- retention-log key); re-sealing after a KEK rotation is `exposure admin keys`.
        ['keyserver', 'sealed_keys', 'SELECT, INSERT'],
        -- Read to let auditors in, purged once disabled; made by `exposure admin`.
        ['keyserver', 'auditor_keys', 'SELECT, DELETE'],
        -- Read (never written) to check the schema is this version's.
        ['keyserver', 'alembic_version', 'SELECT'],

        -- The verification service ------------------------------------------------------
        -- Realms are created and disabled by `exposure admin`; the service reads them to
        -- authenticate and issue. A realm admin sets its code lifetimes and daily quota in
        -- the console (served by this process), so those three columns, and no other.
        ['verification', 'verification_realms',
            'SELECT, UPDATE(short_code_minutes long_code_minutes daily_issue_limit)'],
        -- Read to authenticate (admin, device and auditor keys); a realm admin creates and
        -- disables keys in the console (insert, and an update of disabled_at only: a role
        -- that may insert a key gains nothing by re-enabling one); the purge deletes
        -- disabled keys.
        ['verification', 'verification_api_keys', 'SELECT, INSERT, UPDATE(disabled_at), DELETE'],
        -- Issued (insert), claimed and expired (update), purged (delete, and update to
        -- blank the code hashes of codes kept for their status).
        ['verification', 'verification_codes', 'SELECT, INSERT, UPDATE, DELETE'],
        -- Issued (insert), used (update), purged.
        ['verification', 'verification_tokens', 'SELECT, INSERT, UPDATE, DELETE'],
        -- The token key is created on first use; rotation is `exposure admin`; purged.
        ['verification', 'verification_signing_keys', 'SELECT, INSERT, DELETE'],
        -- Appended by /api/expirecode; never changed; purged.
        ['verification', 'verification_audit_entries', 'SELECT, INSERT, DELETE'],
        -- Console staff: read to sign in; created and disabled by a realm admin in the
        -- console (as by `exposure admin staff`), an authenticator app added by its owner,
        -- so insert and an update of disabled_at and the sealed TOTP secret only; disabled
        -- accounts purged.
        ['verification', 'verification_staff',
         'SELECT, INSERT, UPDATE(disabled_at totp_key_id totp_sealed), DELETE'],
        -- Console sessions: opened at sign-in, deleted at sign-out and by the purge.
        ['verification', 'verification_staff_sessions', 'SELECT, INSERT, DELETE'],
        ['verification', 'leases', 'SELECT, INSERT, UPDATE, DELETE'],
        -- Rate limits, quotas and lockouts: counted by upsert, purged.
        ['verification', 'rate_limit_windows', 'SELECT, INSERT, UPDATE, DELETE'],
        ['verification', 'retention_log', 'SELECT, INSERT, DELETE'],
        ['verification', 'retention_checkpoints', 'SELECT, INSERT, DELETE'],
        -- The token key is made on first use; a retired signing key's sealed private key
        -- is purged with it.
        ['verification', 'sealed_keys', 'SELECT, INSERT, DELETE'],
        ['verification', 'auditor_keys', 'SELECT, DELETE'],
        ['verification', 'alembic_version', 'SELECT']
    ];
    services constant text[] := ARRAY['keyserver', 'verification'];
    present text[] := ARRAY[]::text[];
    service text;
    service_role text;
    row_index integer;
    table_name text;
    privileges text;
    sequence_name text;
BEGIN
    IF target_schema IS NULL THEN
        RAISE EXCEPTION 'no schema of the search_path exists; set it to the migrated schema';
    END IF;

    -- Which services keep their data here: those with one of their own tables present.
    FOREACH service IN ARRAY services LOOP
        FOR row_index IN 1 .. array_length(matrix, 1) LOOP
            IF matrix[row_index][1] = service
                AND starts_with(matrix[row_index][2], service || '_')
                AND to_regclass(format('%I.%I', target_schema, matrix[row_index][2])) IS NOT NULL
            THEN
                present := present || service;
                EXIT;
            END IF;
        END LOOP;
    END LOOP;
    IF cardinality(present) = 0 THEN
        RAISE EXCEPTION 'schema % holds no service tables: run exposure db upgrade first, '
            'or set the search_path to the schema it migrated', target_schema;
    END IF;

    -- The roles, cluster-wide. Then nothing in this schema, for both: what follows is
    -- the whole of what they may do here.
    FOREACH service_role IN ARRAY ARRAY[keyserver_role, verification_role] LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = service_role) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', service_role);
        END IF;
        EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM %I',
            target_schema, service_role);
        EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA %I FROM %I',
            target_schema, service_role);
        EXECUTE format('REVOKE ALL ON SCHEMA %I FROM %I', target_schema, service_role);
    END LOOP;

    FOREACH service IN ARRAY present LOOP
        service_role := CASE service
            WHEN 'keyserver' THEN keyserver_role
            WHEN 'verification' THEN verification_role
        END;
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', target_schema, service_role);
        FOR row_index IN 1 .. array_length(matrix, 1) LOOP
            CONTINUE WHEN matrix[row_index][1] <> service;
            table_name := matrix[row_index][2];
            privileges := matrix[row_index][3];
            -- A column list is checked apart from its privilege and then written as SQL
            -- wants it: 'UPDATE(a b)' is UPDATE limited to 'UPDATE (a, b)'.
            IF NOT ARRAY(
                SELECT regexp_replace(item, '\(.*\)$', '')
                FROM unnest(string_to_array(privileges, ', ')) AS item
            ) <@ allowed THEN
                RAISE EXCEPTION 'refusing % on %: only % are ever granted',
                    privileges, table_name, array_to_string(allowed, ', ');
            END IF;
            IF to_regclass(format('%I.%I', target_schema, table_name)) IS NULL THEN
                RAISE WARNING 'table %.% does not exist yet: run exposure db upgrade, then '
                    'this script again', target_schema, table_name;
                CONTINUE;
            END IF;
            EXECUTE format('GRANT %s ON TABLE %I.%I TO %I',
                regexp_replace(replace(privileges, '(', ' ('), '(\w) (?=\w)', '\1, ', 'g'),
                target_schema, table_name, service_role);
            -- Inserting takes ids from the table's serial or identity sequences.
            IF 'INSERT' = ANY (string_to_array(privileges, ', ')) THEN
                FOR sequence_name IN
                    SELECT dependency.objid::regclass::text
                    FROM pg_catalog.pg_depend AS dependency
                    JOIN pg_catalog.pg_class AS owned ON owned.oid = dependency.objid
                    WHERE dependency.classid = 'pg_catalog.pg_class'::regclass
                        AND dependency.refclassid = 'pg_catalog.pg_class'::regclass
                        AND dependency.refobjid =
                            format('%I.%I', target_schema, table_name)::regclass
                        AND dependency.deptype IN ('a', 'i')
                        AND owned.relkind = 'S'
                LOOP
                    EXECUTE format('GRANT USAGE ON SEQUENCE %s TO %I',
                        sequence_name, service_role);
                END LOOP;
            END IF;
        END LOOP;
    END LOOP;

    -- A table this list does not name is closed to both services: say so, since the
    -- service that needs it will fail until this script learns about it.
    FOR table_name IN
        SELECT relation.relname
        FROM pg_catalog.pg_class AS relation
        WHERE relation.relnamespace = to_regnamespace(quote_ident(target_schema))
            AND relation.relkind IN ('r', 'p')
            AND relation.relname <> 'alembic_version'
        ORDER BY relation.relname
    LOOP
        IF NOT EXISTS (
            SELECT FROM generate_subscripts(matrix, 1) AS listed
            WHERE matrix[listed][2] = table_name
        ) THEN
            RAISE WARNING 'table %.% is in no row of grants.sql: no service may use it',
                target_schema, table_name;
        END IF;
    END LOOP;
END
$grants$;
