//! The SQL this engine issues on its hot paths, as constants, so the raw
//! baseline of `taskstate bench` runs exactly the same statements.

/// Upsert one invocation (columns as the reference writes them).
pub const UPSERT_INVOCATION: &str = "INSERT OR REPLACE INTO state_backend_invocations \
     (invocation_id, call_id_key, task_id_key, arguments_id, serialized_arguments, \
      parent_invocation_id, workflow_id, workflow_type_key, parent_workflow_id) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

/// Add (or replace, by identity) one history record.
pub const INSERT_HISTORY: &str = "INSERT OR REPLACE INTO state_backend_history \
     (invocation_id, history_timestamp, history_status, history_json) VALUES (?1, ?2, ?3, ?4)";

/// Set a result.
pub const SET_RESULT: &str =
    "INSERT OR REPLACE INTO state_backend_results (invocation_id, result_data) VALUES (?1, ?2)";

/// Read one invocation.
pub const GET_INVOCATION: &str = "SELECT call_id_key, serialized_arguments, parent_invocation_id, \
     workflow_id, workflow_type_key, parent_workflow_id FROM state_backend_invocations \
     WHERE invocation_id = ?1";

/// Read one key's history rows in order, with their stored time keys.
pub const GET_HISTORY: &str = "SELECT history_json, invocation_id, history_timestamp \
     FROM state_backend_history WHERE invocation_id = ?1 ORDER BY history_timestamp, rowid";

/// Read a result.
pub const GET_RESULT: &str =
    "SELECT result_data FROM state_backend_results WHERE invocation_id = ?1";

/// Children of an invocation.
pub const CHILDREN: &str = "SELECT invocation_id FROM state_backend_invocations \
     WHERE parent_invocation_id = ?1 ORDER BY invocation_id";

/// First page of ids with history in [?1, ?2], ?3 rows.
///
/// The unary `+` keeps SQLite off the time index: through it, every page
/// would collect and sort the whole range (O(n) a page, O(n²) a scan).
/// Instead the primary-key index `(invocation_id, history_timestamp, …)` is
/// walked in id order from the cursor, so a page costs its own rows plus
/// the rows of ids skipped because their history is outside the range.
pub const IDS_IN_RANGE_FIRST: &str = "SELECT DISTINCT invocation_id FROM state_backend_history \
     WHERE +history_timestamp >= ?1 AND +history_timestamp <= ?2 \
     ORDER BY invocation_id LIMIT ?3";

/// Next page of ids with history in [?1, ?2] after id ?4 (see
/// [`IDS_IN_RANGE_FIRST`]).
pub const IDS_IN_RANGE_AFTER: &str = "SELECT DISTINCT invocation_id FROM state_backend_history \
     WHERE invocation_id > ?4 AND +history_timestamp >= ?1 AND +history_timestamp <= ?2 \
     ORDER BY invocation_id LIMIT ?3";

/// First page of history in [?1, ?2], ?3 rows.
pub const HISTORY_IN_RANGE_FIRST: &str = "SELECT history_timestamp, rowid, history_json, invocation_id \
     FROM state_backend_history \
     WHERE history_timestamp >= ?1 AND history_timestamp <= ?2 \
     ORDER BY history_timestamp, rowid LIMIT ?3";

/// Next page of history up to ?2 after (timestamp ?4, rowid ?5), ?3 rows.
///
/// The cursor's timestamp is the only lower bound on `history_timestamp`
/// (it is ≥ the range start ?1, which is not needed again): with a second
/// lower bound SQLite seeks the index from the range start on every page,
/// and a full scan becomes quadratic. Rows tied with the cursor's
/// timestamp are told apart by rowid.
pub const HISTORY_IN_RANGE_AFTER: &str = "SELECT history_timestamp, rowid, history_json, invocation_id \
     FROM state_backend_history \
     WHERE history_timestamp >= ?4 AND history_timestamp <= ?2 \
     AND (history_timestamp > ?4 OR rowid > ?5) \
     ORDER BY history_timestamp, rowid LIMIT ?3";

/// Workflow runs by id (?1 unused, ?2 unused, ?3 limit; -1: all).
pub const RUNS: &str = "SELECT workflow_id, workflow_type_key, parent_workflow_id FROM state_backend_workflows \
     WHERE ?1 IS NULL AND ?2 IS NULL ORDER BY workflow_id LIMIT ?3";
/// Workflow runs after id ?2.
pub const RUNS_AFTER: &str = "SELECT workflow_id, workflow_type_key, parent_workflow_id FROM state_backend_workflows \
     WHERE ?1 IS NULL AND workflow_id > ?2 ORDER BY workflow_id LIMIT ?3";
/// Workflow runs of type ?1.
pub const RUNS_OF_TYPE: &str = "SELECT workflow_id, workflow_type_key, parent_workflow_id FROM state_backend_workflows \
     WHERE workflow_type_key = ?1 AND ?2 IS NULL ORDER BY workflow_id LIMIT ?3";
/// Workflow runs of type ?1 after id ?2.
pub const RUNS_OF_TYPE_AFTER: &str = "SELECT workflow_id, workflow_type_key, parent_workflow_id FROM state_backend_workflows \
     WHERE workflow_type_key = ?1 AND workflow_id > ?2 ORDER BY workflow_id LIMIT ?3";

/// The distinct workflow types, ascending: a loose index scan (one
/// `min` seek on the type index per type), where `SELECT DISTINCT` would
/// walk an index entry per run.
pub const WORKFLOW_TYPES: &str = "WITH RECURSIVE t(k) AS ( \
     SELECT (SELECT min(workflow_type_key) FROM state_backend_workflows) \
     UNION ALL \
     SELECT (SELECT min(workflow_type_key) FROM state_backend_workflows WHERE workflow_type_key > t.k) \
     FROM t WHERE t.k IS NOT NULL) \
     SELECT k FROM t WHERE k IS NOT NULL";
