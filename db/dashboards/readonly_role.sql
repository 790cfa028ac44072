-- Read-only access for dashboards (Grafana, Metabase, Superset): the role `dashboard_reader` may read the three
-- dashboard views of migration 0002 (sentiment_timeseries, open_alerts, entity_summary) and nothing else.
--
-- Apply to the suite's database as a superuser or the owner of the views (safe to run again):
--   psql -v ON_ERROR_STOP=1 -h HOST -U postgres -d DBNAME -f db/dashboards/readonly_role.sql
-- Run it again whenever a migration drops and recreates these views (recreated views lose their grants).
--
-- The views run with their owner's rights, so SELECT on a view needs no right on the tables behind it:
-- the reader sees aggregates and alerts only, never raw tables (document texts, chat messages, users, ...).
--
-- Default privileges, deliberately not used: ALTER DEFAULT PRIVILEGES ... GRANT SELECT ON TABLES would also
-- hand every future TABLE of the schema to the reader, not just views. New dashboard views are granted by name
-- in the GRANT SELECT below instead.
--
-- PostgreSQL only; no psql meta-commands, so it also runs through any client that sends plain SQL.

BEGIN;

-- The group role: NOLOGIN, no one connects as it directly.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'dashboard_reader') THEN
        CREATE ROLE dashboard_reader NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
    END IF;
EXCEPTION
    -- Another session created it between the check and CREATE ROLE: fine, it exists now.
    WHEN duplicate_object OR unique_violation THEN
        RAISE NOTICE 'role dashboard_reader already exists';
END
$$;

-- CONNECT on this database (whatever it is called).
DO $$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO dashboard_reader', current_database());
END
$$;

GRANT USAGE ON SCHEMA public TO dashboard_reader;

-- Views only: take back anything granted on tables, views or sequences of the schema, then grant the views.
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM dashboard_reader;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM dashboard_reader;
GRANT SELECT ON sentiment_timeseries, open_alerts, entity_summary TO dashboard_reader;

COMMIT;

-- Example LOGIN user for one dashboard tool, a member of the group role (run once, with a real password;
-- it inherits the group's rights; give each tool its own user so access can be revoked per tool):
--
--   CREATE ROLE grafana LOGIN PASSWORD 'change-me' IN ROLE dashboard_reader
--       NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT CONNECTION LIMIT 10;
--   ALTER ROLE grafana SET default_transaction_read_only = on;
--   ALTER ROLE grafana SET statement_timeout = '30s';
--
-- Remove it again with: DROP ROLE grafana;
