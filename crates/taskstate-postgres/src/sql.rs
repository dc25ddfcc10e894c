//! Every statement this engine issues, and the schema's DDL.

use crate::bulk;

/// Every statement this engine issues, with the schema spliced in once
/// (identifiers cannot be parameters; the schema name is checked to be a
/// plain identifier). The hot-path ones are public so the raw baseline of
/// `taskstate bench` issues exactly the same SQL.
pub struct Statements {
    /// Upsert one invocation ($1..$9 as the columns).
    pub upsert_invocation: String,
    /// Read one invocation ($1 id).
    pub get_invocation: String,
    /// Children of $1, ascending.
    pub children: String,
    pub(crate) ids_all: String,
    pub(crate) ids_by_wf: String,
    pub(crate) ids_by_type: String,
    pub(crate) ids_by_both: String,
    /// Add or replace one history record ($1 id, $2 ts_key, $3 history_us, $4 status, $5 json).
    pub insert_history: String,
    pub(crate) insert_history_batch: String,
    pub(crate) upsert_invocation_batch: String,
    /// History of $1 in order.
    pub get_history: String,
    /// First page of history in [$1, $2], $3 rows.
    pub history_first: String,
    /// Next page of history in [$1, $2] after ($4, $5), $3 rows.
    pub history_after: String,
    /// First page of ids with history in [$1, $2], $3 rows.
    pub ids_range_first: String,
    /// Next page of ids in [$1, $2] after $4, $3 rows.
    pub ids_range_after: String,
    /// Set result $2 of $1.
    pub set_result: String,
    /// Result of $1.
    pub get_result: String,
    pub(crate) set_exception: String,
    pub(crate) get_exception: String,
    pub(crate) upsert_workflow: String,
    pub(crate) workflow_types: String,
    pub(crate) workflow_runs: String,
    pub(crate) workflow_runs_after: String,
    pub(crate) workflow_runs_of: String,
    pub(crate) workflow_runs_of_after: String,
    pub(crate) insert_sub: String,
    pub(crate) subs_of: String,
    pub(crate) set_data: String,
    pub(crate) get_data: String,
    pub(crate) upsert_app: String,
    pub(crate) get_app: String,
    pub(crate) all_apps: String,
    pub(crate) upsert_runner: String,
    pub(crate) get_runner: String,
    pub(crate) runner_ids: String,
    pub(crate) purge: String,
    /// The bulk path's statements.
    pub(crate) bulk: bulk::BulkSql,
    /// Retention's statements.
    pub(crate) prune: crate::prune::PruneSql,
    /// The schema's table names (the monitor's statements are built per
    /// filter combination on them).
    pub(crate) tables: Tables,
}

/// `table` of schema `s` as SQL names it (the schema is a checked plain
/// identifier, quoted so its case is kept).
pub(crate) fn qualified(s: &str, table: &str) -> String {
    format!("\"{s}\".{table}")
}

/// The schema's tables, each named once for every statement built on
/// them (the hot paths', the bulk path's, retention's).
pub(crate) struct Tables {
    pub(crate) inv: String,
    pub(crate) his: String,
    pub(crate) res: String,
    pub(crate) exc: String,
    pub(crate) wf: String,
    pub(crate) sub: String,
    pub(crate) data: String,
    pub(crate) app: String,
    pub(crate) run: String,
    /// Each history key's latest row (schema version 4).
    pub(crate) latest: String,
}

impl Tables {
    pub(crate) fn new(s: &str) -> Self {
        let q = |t: &str| qualified(s, t);
        Self {
            inv: q("invocations"),
            his: q("history"),
            res: q("results"),
            exc: q("exceptions"),
            wf: q("workflows"),
            sub: q("workflow_sub_invocations"),
            data: q("workflow_data"),
            app: q("app_info"),
            run: q("runner_contexts"),
            latest: q("latest"),
        }
    }
}

impl Statements {
    /// The statements for tables in `schema`.
    #[must_use]
    pub fn new(s: &str) -> Self {
        let tables = Tables::new(s);
        let Tables {
            inv,
            his,
            res,
            exc,
            wf,
            sub,
            data,
            app,
            run,
            latest,
        } = &tables;
        Self {
            upsert_invocation: format!(
                "INSERT INTO {inv} (invocation_id, call_id_key, task_id_key, arguments_id, serialized_arguments, \
                 parent_invocation_id, workflow_id, workflow_type_key, parent_workflow_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (invocation_id) DO UPDATE SET \
                 call_id_key = EXCLUDED.call_id_key, task_id_key = EXCLUDED.task_id_key, \
                 arguments_id = EXCLUDED.arguments_id, serialized_arguments = EXCLUDED.serialized_arguments, \
                 parent_invocation_id = EXCLUDED.parent_invocation_id, workflow_id = EXCLUDED.workflow_id, \
                 workflow_type_key = EXCLUDED.workflow_type_key, parent_workflow_id = EXCLUDED.parent_workflow_id"
            ),
            get_invocation: format!(
                "SELECT call_id_key, serialized_arguments, parent_invocation_id, workflow_id, \
                 workflow_type_key, parent_workflow_id FROM {inv} WHERE invocation_id = $1"
            ),
            children: format!(
                "SELECT invocation_id FROM {inv} WHERE parent_invocation_id = $1 ORDER BY invocation_id"
            ),
            ids_all: format!("SELECT invocation_id FROM {inv} ORDER BY invocation_id"),
            ids_by_wf: format!(
                "SELECT invocation_id FROM {inv} WHERE workflow_id = $1 ORDER BY invocation_id"
            ),
            ids_by_type: format!(
                "SELECT invocation_id FROM {inv} WHERE workflow_type_key = $1 ORDER BY invocation_id"
            ),
            ids_by_both: format!(
                "SELECT invocation_id FROM {inv} WHERE workflow_id = $1 AND workflow_type_key = $2 \
                 ORDER BY invocation_id"
            ),
            // A replaced record takes a new sequence number: the latest
            // insertion position, as the contract asks.
            insert_history: format!(
                "INSERT INTO {his} (invocation_id, ts_key, history_us, status, history_json) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (invocation_id, ts_key, status) DO UPDATE SET \
                 history_us = EXCLUDED.history_us, history_json = EXCLUDED.history_json, \
                 seq = nextval('\"{s}\".history_seq')"
            ),
            // A batch in one statement: the arrays' rows in their order
            // (WITH ORDINALITY), so sequence numbers follow the batch order.
            insert_history_batch: format!(
                "INSERT INTO {his} (invocation_id, ts_key, history_us, status, history_json) \
                 SELECT i, t, u, st, j FROM UNNEST($1::text[], $2::float8[], $3::int8[], $4::text[], $5::text[]) \
                 WITH ORDINALITY AS r(i, t, u, st, j, n) ORDER BY n \
                 ON CONFLICT (invocation_id, ts_key, status) DO UPDATE SET \
                 history_us = EXCLUDED.history_us, history_json = EXCLUDED.history_json, \
                 seq = nextval('\"{s}\".history_seq')"
            ),
            upsert_invocation_batch: format!(
                "INSERT INTO {inv} (invocation_id, call_id_key, task_id_key, arguments_id, serialized_arguments, \
                 parent_invocation_id, workflow_id, workflow_type_key, parent_workflow_id) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
                 $6::text[], $7::text[], $8::text[], $9::text[]) \
                 ON CONFLICT (invocation_id) DO UPDATE SET \
                 call_id_key = EXCLUDED.call_id_key, task_id_key = EXCLUDED.task_id_key, \
                 arguments_id = EXCLUDED.arguments_id, serialized_arguments = EXCLUDED.serialized_arguments, \
                 parent_invocation_id = EXCLUDED.parent_invocation_id, workflow_id = EXCLUDED.workflow_id, \
                 workflow_type_key = EXCLUDED.workflow_type_key, parent_workflow_id = EXCLUDED.parent_workflow_id"
            ),
            get_history: format!(
                "SELECT history_json, invocation_id, ts_key FROM {his} WHERE invocation_id = $1 ORDER BY ts_key, seq"
            ),
            history_first: format!(
                "SELECT ts_key, seq, history_json, invocation_id FROM {his} \
                 WHERE ts_key >= $1 AND ts_key <= $2 ORDER BY ts_key, seq LIMIT $3"
            ),
            history_after: format!(
                "SELECT ts_key, seq, history_json, invocation_id FROM {his} \
                 WHERE ts_key >= $1 AND ts_key <= $2 AND (ts_key, seq) > ($4, $5) \
                 ORDER BY ts_key, seq LIMIT $3"
            ),
            ids_range_first: format!(
                "SELECT DISTINCT invocation_id FROM {his} WHERE ts_key >= $1 AND ts_key <= $2 \
                 ORDER BY invocation_id LIMIT $3"
            ),
            ids_range_after: format!(
                "SELECT DISTINCT invocation_id FROM {his} WHERE invocation_id > $4 AND ts_key >= $1 \
                 AND ts_key <= $2 ORDER BY invocation_id LIMIT $3"
            ),
            set_result: format!(
                "INSERT INTO {res} (invocation_id, result_data) VALUES ($1, $2) \
                 ON CONFLICT (invocation_id) DO UPDATE SET result_data = EXCLUDED.result_data"
            ),
            get_result: format!("SELECT result_data FROM {res} WHERE invocation_id = $1"),
            set_exception: format!(
                "INSERT INTO {exc} (invocation_id, exception_data) VALUES ($1, $2) \
                 ON CONFLICT (invocation_id) DO UPDATE SET exception_data = EXCLUDED.exception_data"
            ),
            get_exception: format!("SELECT exception_data FROM {exc} WHERE invocation_id = $1"),
            upsert_workflow: format!(
                "INSERT INTO {wf} (workflow_id, workflow_type_key, parent_workflow_id) VALUES ($1, $2, $3) \
                 ON CONFLICT (workflow_id) DO UPDATE SET workflow_type_key = EXCLUDED.workflow_type_key, \
                 parent_workflow_id = EXCLUDED.parent_workflow_id"
            ),
            // A loose index scan: one min() seek per type instead of a
            // walk over every run.
            workflow_types: format!(
                "WITH RECURSIVE t(k) AS ( \
                 SELECT (SELECT min(workflow_type_key) FROM {wf}) \
                 UNION ALL \
                 SELECT (SELECT min(workflow_type_key) FROM {wf} WHERE workflow_type_key > t.k) \
                 FROM t WHERE t.k IS NOT NULL) \
                 SELECT k FROM t WHERE k IS NOT NULL"
            ),
            workflow_runs: format!(
                "SELECT workflow_id, workflow_type_key, parent_workflow_id FROM {wf} \
                 WHERE $1::text IS NULL AND $2::text IS NULL ORDER BY workflow_id LIMIT $3::bigint"
            ),
            workflow_runs_after: format!(
                "SELECT workflow_id, workflow_type_key, parent_workflow_id FROM {wf} \
                 WHERE $1::text IS NULL AND workflow_id > $2::text ORDER BY workflow_id LIMIT $3::bigint"
            ),
            workflow_runs_of: format!(
                "SELECT workflow_id, workflow_type_key, parent_workflow_id FROM {wf} \
                 WHERE workflow_type_key = $1::text AND $2::text IS NULL ORDER BY workflow_id LIMIT $3::bigint"
            ),
            workflow_runs_of_after: format!(
                "SELECT workflow_id, workflow_type_key, parent_workflow_id FROM {wf} \
                 WHERE workflow_type_key = $1::text AND workflow_id > $2::text ORDER BY workflow_id LIMIT $3::bigint"
            ),
            insert_sub: format!(
                "INSERT INTO {sub} (parent_workflow_id, sub_invocation_id) VALUES ($1, $2) ON CONFLICT DO NOTHING"
            ),
            subs_of: format!(
                "SELECT sub_invocation_id FROM {sub} WHERE parent_workflow_id = $1 ORDER BY sub_invocation_id"
            ),
            set_data: format!(
                "INSERT INTO {data} (workflow_id, data_key, data_value) VALUES ($1, $2, $3) \
                 ON CONFLICT (workflow_id, data_key) DO UPDATE SET data_value = EXCLUDED.data_value"
            ),
            get_data: format!(
                "SELECT data_value FROM {data} WHERE workflow_id = $1 AND data_key = $2"
            ),
            upsert_app: format!(
                "INSERT INTO {app} (app_id, app_info_json) VALUES ($1, $2) \
                 ON CONFLICT (app_id) DO UPDATE SET app_info_json = EXCLUDED.app_info_json"
            ),
            get_app: format!("SELECT app_info_json FROM {app} WHERE app_id = $1"),
            all_apps: format!("SELECT app_info_json, app_id FROM {app} ORDER BY app_id"),
            upsert_runner: format!(
                "INSERT INTO {run} (runner_id, runner_cls, parent_ctx_id, pid, hostname, thread_id) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (runner_id) DO UPDATE SET \
                 runner_cls = EXCLUDED.runner_cls, parent_ctx_id = EXCLUDED.parent_ctx_id, pid = EXCLUDED.pid, \
                 hostname = EXCLUDED.hostname, thread_id = EXCLUDED.thread_id"
            ),
            get_runner: format!(
                "SELECT runner_cls, parent_ctx_id, pid, hostname, thread_id FROM {run} WHERE runner_id = $1"
            ),
            runner_ids: format!("SELECT runner_id FROM {run} ORDER BY runner_id"),
            purge: format!(
                "TRUNCATE {latest}, {inv}, {his}, {res}, {exc}, {wf}, {sub}, {data}, {app}, {run}"
            ),
            bulk: bulk::BulkSql::new(s),
            prune: crate::prune::PruneSql::new(&tables),
            tables,
        }
    }
}

/// The tables of schema version 1. `{s}` is the quoted schema.
pub(crate) const DDL_V1: &str = r#"
CREATE SEQUENCE IF NOT EXISTS {s}.history_seq;
CREATE TABLE IF NOT EXISTS {s}.invocations (
    invocation_id text COLLATE "C" PRIMARY KEY,
    call_id_key text COLLATE "C" NOT NULL,
    task_id_key text COLLATE "C" NOT NULL,
    arguments_id text NOT NULL,
    serialized_arguments text NOT NULL,
    parent_invocation_id text COLLATE "C",
    workflow_id text COLLATE "C" NOT NULL,
    workflow_type_key text COLLATE "C" NOT NULL,
    parent_workflow_id text COLLATE "C"
);
CREATE INDEX IF NOT EXISTS invocations_parent ON {s}.invocations (parent_invocation_id, invocation_id);
CREATE INDEX IF NOT EXISTS invocations_workflow ON {s}.invocations (workflow_id, invocation_id);
CREATE INDEX IF NOT EXISTS invocations_type ON {s}.invocations (workflow_type_key, invocation_id);
CREATE TABLE IF NOT EXISTS {s}.history (
    invocation_id text COLLATE "C" NOT NULL,
    ts_key double precision NOT NULL,
    history_us bigint NOT NULL,
    status text NOT NULL,
    history_json text NOT NULL,
    seq bigint NOT NULL DEFAULT nextval('{s}.history_seq'),
    UNIQUE (invocation_id, ts_key, status)
);
CREATE INDEX IF NOT EXISTS history_time ON {s}.history (ts_key, seq);
CREATE TABLE IF NOT EXISTS {s}.results (
    invocation_id text COLLATE "C" PRIMARY KEY,
    result_data text NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.exceptions (
    invocation_id text COLLATE "C" PRIMARY KEY,
    exception_data text NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.workflows (
    workflow_id text COLLATE "C" PRIMARY KEY,
    workflow_type_key text COLLATE "C" NOT NULL,
    parent_workflow_id text COLLATE "C"
);
CREATE INDEX IF NOT EXISTS workflows_type ON {s}.workflows (workflow_type_key, workflow_id);
CREATE TABLE IF NOT EXISTS {s}.workflow_sub_invocations (
    parent_workflow_id text COLLATE "C" NOT NULL,
    sub_invocation_id text COLLATE "C" NOT NULL,
    PRIMARY KEY (parent_workflow_id, sub_invocation_id)
);
CREATE TABLE IF NOT EXISTS {s}.workflow_data (
    workflow_id text COLLATE "C" NOT NULL,
    data_key text COLLATE "C" NOT NULL,
    data_value text NOT NULL,
    PRIMARY KEY (workflow_id, data_key)
);
CREATE TABLE IF NOT EXISTS {s}.app_info (
    app_id text COLLATE "C" PRIMARY KEY,
    app_info_json text NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.runner_contexts (
    runner_id text COLLATE "C" PRIMARY KEY,
    runner_cls text NOT NULL,
    parent_ctx_id text COLLATE "C",
    pid bigint NOT NULL,
    hostname text NOT NULL,
    thread_id bigint NOT NULL
);
"#;

/// Version 1 → 2: history by insertion order, for the bulk path's pages
/// (keyset on `seq`; without it every page would sort the whole table).
/// Not named `history_seq`: that is the sequence's name, and indexes and
/// sequences share one namespace (`IF NOT EXISTS` would skip it).
pub(crate) const DDL_V2: &str = "CREATE INDEX IF NOT EXISTS history_by_seq ON {s}.history (seq);";

/// Version 2 → 3: the links retention follows (SPEC §10) that no earlier
/// index serves.
pub(crate) const DDL_V3: &str = "
CREATE INDEX IF NOT EXISTS invocations_parent_workflow ON {s}.invocations (parent_workflow_id);
CREATE INDEX IF NOT EXISTS workflows_parent ON {s}.workflows (parent_workflow_id);
CREATE INDEX IF NOT EXISTS sub_invocations_sub ON {s}.workflow_sub_invocations (sub_invocation_id);
";

/// Each history key's newest row by (`ts_key`, `seq`), in the `latest`
/// table's columns, computed from the history (`{s}`: the quoted schema):
/// what the upgrade fills the table with, and what a schema without it is
/// answered from (`monitor.rs`). A macro, so the DDL stays a constant.
macro_rules! newest_rows {
    () => {
        "SELECT DISTINCT ON (h.invocation_id) h.invocation_id, h.ts_key, h.seq, h.status, i.task_id_key \
         FROM {s}.history h LEFT JOIN {s}.invocations i ON i.invocation_id = h.invocation_id \
         ORDER BY h.invocation_id, h.ts_key DESC, h.seq DESC"
    };
}
pub(crate) use newest_rows;

/// Version 3 → 4: each history key's latest row (see `taskstate_core::monitor`), kept by
/// triggers so every write path (point, batch, bulk, retention) keeps it
/// current: by (`ts_key`, `seq`), the newest row's key, sequence and
/// status, and the invocation's task (NULL for a key without one). The
/// history is locked while the table is filled, so no row slips between
/// the fill and the triggers.
pub(crate) const DDL_V4: &str = concat!(
    r#"
LOCK TABLE {s}.history, {s}.invocations IN SHARE ROW EXCLUSIVE MODE;
CREATE TABLE IF NOT EXISTS {s}.latest (
    invocation_id text COLLATE "C" PRIMARY KEY,
    ts_key double precision NOT NULL,
    seq bigint NOT NULL,
    status text NOT NULL,
    task_id_key text COLLATE "C"
);
CREATE INDEX IF NOT EXISTS latest_status ON {s}.latest (status, ts_key, invocation_id);
CREATE INDEX IF NOT EXISTS latest_task ON {s}.latest (task_id_key, ts_key, invocation_id);
INSERT INTO {s}.latest (invocation_id, ts_key, seq, status, task_id_key)
"#,
    newest_rows!(),
    r#"
ON CONFLICT (invocation_id) DO NOTHING;
CREATE OR REPLACE FUNCTION {s}.latest_on_history() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF EXISTS (SELECT 1 FROM {s}.latest WHERE invocation_id = OLD.invocation_id AND seq = OLD.seq) THEN
            DELETE FROM {s}.latest WHERE invocation_id = OLD.invocation_id;
            INSERT INTO {s}.latest (invocation_id, ts_key, seq, status, task_id_key)
            SELECT h.invocation_id, h.ts_key, h.seq, h.status,
                (SELECT i.task_id_key FROM {s}.invocations i WHERE i.invocation_id = OLD.invocation_id)
            FROM {s}.history h WHERE h.invocation_id = OLD.invocation_id
            ORDER BY h.ts_key DESC, h.seq DESC LIMIT 1;
        END IF;
        RETURN NULL;
    END IF;
    INSERT INTO {s}.latest AS l (invocation_id, ts_key, seq, status, task_id_key)
    VALUES (NEW.invocation_id, NEW.ts_key, NEW.seq, NEW.status,
        (SELECT i.task_id_key FROM {s}.invocations i WHERE i.invocation_id = NEW.invocation_id))
    ON CONFLICT (invocation_id) DO UPDATE SET
        ts_key = EXCLUDED.ts_key, seq = EXCLUDED.seq, status = EXCLUDED.status,
        task_id_key = EXCLUDED.task_id_key
    WHERE (EXCLUDED.ts_key, EXCLUDED.seq) >= (l.ts_key, l.seq);
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION {s}.latest_on_invocation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        UPDATE {s}.latest SET task_id_key = NULL
        WHERE invocation_id = OLD.invocation_id AND task_id_key IS NOT NULL;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        UPDATE {s}.latest SET task_id_key = NEW.task_id_key
        WHERE invocation_id = NEW.invocation_id AND task_id_key IS DISTINCT FROM NEW.task_id_key;
    END IF;
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS latest_on_history ON {s}.history;
CREATE TRIGGER latest_on_history AFTER INSERT OR UPDATE OR DELETE ON {s}.history
    FOR EACH ROW EXECUTE FUNCTION {s}.latest_on_history();
DROP TRIGGER IF EXISTS latest_on_invocation ON {s}.invocations;
CREATE TRIGGER latest_on_invocation AFTER INSERT OR UPDATE OF invocation_id, task_id_key OR DELETE
    ON {s}.invocations FOR EACH ROW EXECUTE FUNCTION {s}.latest_on_invocation();
"#
);
