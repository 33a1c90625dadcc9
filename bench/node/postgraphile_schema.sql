-- PostGraphile 5 over coursegen's own tables, as a PostGraphile user would deploy it.
-- Applied by bench/side_by_side.py to the bench database only (never to the app's database).
--
-- Who may see what is PostgreSQL's row-level security, keyed on the viewer id that
-- graphile.config.mjs puts into `jwt.claims.sub` (pgSettings) after verifying coursegen's own
-- access token; PostGraphile's documented way, and the only one that also guards the
-- `allSubjects`, `topicById`, ... fields PostGraphile generates for every granted table.
-- The meaning is coursegen's visible_courses_q: live courses the viewer owns or is a member of.
--
-- coursegen and the raw floor connect as the superuser `postgres`, which row-level security
-- does not apply to, so nothing here changes what they read.
--
-- Roles are cluster-wide in PostgreSQL (the one thing that is not inside the bench database):
-- they are created once, if missing, under names no other code uses.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'coursegen_bench_viewer') THEN
        CREATE ROLE coursegen_bench_viewer NOLOGIN;
    END IF;
    -- PostGraphile connects as this role; NOINHERIT: it holds no table rights of its own, so
    -- a request without a valid token (no `role` in pgSettings) reads nothing.
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'coursegen_bench_authenticator') THEN
        CREATE ROLE coursegen_bench_authenticator LOGIN NOINHERIT;
    END IF;
END
$$;
-- A password for servers whose pg_hba asks for one; on loopback, for a bench role only.
ALTER ROLE coursegen_bench_authenticator LOGIN NOINHERIT PASSWORD 'coursegen-bench';
GRANT coursegen_bench_viewer TO coursegen_bench_authenticator;

-- Helpers live outside the exposed schema, so PostGraphile does not publish them.
CREATE SCHEMA IF NOT EXISTS bench_pg_private;
REVOKE ALL ON SCHEMA bench_pg_private FROM PUBLIC;
GRANT USAGE ON SCHEMA bench_pg_private TO coursegen_bench_viewer;

CREATE OR REPLACE FUNCTION bench_pg_private.viewer_id() RETURNS uuid
    LANGUAGE sql STABLE
    AS $$ SELECT nullif(current_setting('jwt.claims.sub', true), '')::uuid $$;

-- Only the dashboard's tables are granted; PostGraphile's RBAC plugin leaves every other table
-- (users, sessions, sync, ...) out of the schema.
GRANT SELECT ON courses, course_members, subjects, topics, topic_progress
    TO coursegen_bench_viewer;

ALTER TABLE courses ENABLE ROW LEVEL SECURITY;
ALTER TABLE course_members ENABLE ROW LEVEL SECURITY;
ALTER TABLE subjects ENABLE ROW LEVEL SECURITY;
ALTER TABLE topics ENABLE ROW LEVEL SECURITY;
ALTER TABLE topic_progress ENABLE ROW LEVEL SECURITY;

-- `(SELECT viewer_id())`: evaluated once per statement (an InitPlan), not once per row.
DROP POLICY IF EXISTS bench_viewer_memberships ON course_members;
CREATE POLICY bench_viewer_memberships ON course_members FOR SELECT TO coursegen_bench_viewer
    USING (user_id = (SELECT bench_pg_private.viewer_id()));

DROP POLICY IF EXISTS bench_viewer_courses ON courses;
CREATE POLICY bench_viewer_courses ON courses FOR SELECT TO coursegen_bench_viewer
    USING (
        deleted_at IS NULL
        AND (
            owner_id = (SELECT bench_pg_private.viewer_id())
            -- course_members is itself filtered to the viewer's rows by its policy
            OR id IN (SELECT course_id FROM course_members)
        )
    );

-- A subject or topic is visible with its course (the courses policy applies inside).
DROP POLICY IF EXISTS bench_viewer_subjects ON subjects;
CREATE POLICY bench_viewer_subjects ON subjects FOR SELECT TO coursegen_bench_viewer
    USING (course_id IN (SELECT id FROM courses));

DROP POLICY IF EXISTS bench_viewer_topics ON topics;
CREATE POLICY bench_viewer_topics ON topics FOR SELECT TO coursegen_bench_viewer
    USING (course_id IN (SELECT id FROM courses));

DROP POLICY IF EXISTS bench_viewer_progress ON topic_progress;
CREATE POLICY bench_viewer_progress ON topic_progress FOR SELECT TO coursegen_bench_viewer
    USING (user_id = (SELECT bench_pg_private.viewer_id()));

-- Topic.progress: the viewer's own progress row (or null), coursegen's `progress` field, as a
-- computed column (PostGraphile's idiom for a field derived from the row). Only the
-- `--postgraphile-progress computed` variant queries it: PostgreSQL calls it once per topic,
-- which costs more than the plain relation topicProgressesByTopicIdList the default uses.
CREATE OR REPLACE FUNCTION topics_progress(t topics) RETURNS topic_progress
    LANGUAGE sql STABLE
    AS $$
        SELECT p.* FROM topic_progress p
        WHERE p.topic_id = t.id AND p.user_id = bench_pg_private.viewer_id()
    $$;
REVOKE ALL ON FUNCTION topics_progress(topics) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION topics_progress(topics) TO coursegen_bench_viewer;
