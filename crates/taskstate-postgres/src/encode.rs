//! Encoding batches as column arrays for `UNNEST` statements.

use std::collections::HashMap;

use taskstate_core::{CallDTO, HistoryRow, InvocationDTO, InvocationHistory};

use crate::conn::Db;
use crate::sql::Statements;

/// An invocation batch as column arrays (table order), of entries sharing
/// an id only the last (ON CONFLICT cannot touch a row twice in one
/// statement), sorted by id so concurrent batches lock rows in one order
/// (no deadlocks between them). `None` for no entries.
pub(crate) fn invocation_columns<'a>(
    entries: impl Iterator<Item = (&'a InvocationDTO, &'a CallDTO)>,
) -> Option<[Vec<Option<String>>; 9]> {
    let mut latest: std::collections::BTreeMap<&str, (&InvocationDTO, &CallDTO)> =
        std::collections::BTreeMap::new();
    for (inv, call) in entries {
        latest.insert(inv.invocation_id.as_str(), (inv, call));
    }
    if latest.is_empty() {
        return None;
    }
    let mut cols: [Vec<Option<String>>; 9] = Default::default();
    for (inv, call) in latest.values() {
        let row = [
            Some(inv.invocation_id.as_str().to_owned()),
            Some(call.call_id.key().to_owned()),
            Some(call.call_id.task_id().key().to_owned()),
            Some(call.call_id.args_id().to_owned()),
            Some(call.serialized_arguments.to_json()),
            inv.parent_invocation_id
                .as_ref()
                .map(|p| p.as_str().to_owned()),
            Some(inv.workflow.workflow_id.as_str().to_owned()),
            Some(inv.workflow.workflow_type.key().to_owned()),
            inv.workflow
                .parent_workflow_id
                .as_ref()
                .map(|p| p.as_str().to_owned()),
        ];
        for (col, v) in cols.iter_mut().zip(row) {
            col.push(v);
        }
    }
    Some(cols)
}

/// Runs the batch upsert of [`invocation_columns`].
pub(crate) fn exec_invocations(
    db: &mut Db<'_>,
    sql: &Statements,
    c: &[Vec<Option<String>>; 9],
) -> std::result::Result<(), postgres::Error> {
    db.execute(
        &sql.upsert_invocation_batch,
        &[
            &c[0], &c[1], &c[2], &c[3], &c[4], &c[5], &c[6], &c[7], &c[8],
        ],
    )
    .map(drop)
}

/// History rows as column arrays (key, time key, µs, status, JSON) in
/// their order; of rows sharing an identity only the last, at its own
/// (later) position, which is where it would end up anyway.
pub(crate) type HistoryColumns = (
    Vec<String>,
    Vec<f64>,
    Vec<i64>,
    Vec<&'static str>,
    Vec<String>,
);

/// See [`HistoryColumns`]; `None` for no rows.
pub(crate) fn history_columns(rows: &[HistoryRow<'_>]) -> Option<HistoryColumns> {
    if rows.is_empty() {
        return None;
    }
    let mut last = HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        last.insert(r.identity(), i);
    }
    let mut cols: HistoryColumns = Default::default();
    // One JSON per record however many keys it is stored under.
    let mut prev: Option<(&InvocationHistory, String)> = None;
    for (i, r) in rows.iter().enumerate() {
        let (k, t, st) = r.identity();
        if last.get(&(k, t, st)) != Some(&i) {
            continue;
        }
        let json = match &prev {
            Some((rec, json)) if std::ptr::eq(*rec, r.record) => json.clone(),
            _ => {
                let json = r.record.to_json();
                prev = Some((r.record, json.clone()));
                json
            }
        };
        cols.0.push(k.as_str().to_owned());
        cols.1.push(t.seconds());
        cols.2.push(r.record.timestamp.micros());
        cols.3.push(st.as_str());
        cols.4.push(json);
    }
    Some(cols)
}

/// Runs the batch insert of [`history_columns`].
pub(crate) fn exec_history(
    db: &mut Db<'_>,
    sql: &Statements,
    c: &HistoryColumns,
) -> std::result::Result<(), postgres::Error> {
    db.execute(&sql.insert_history_batch, &[&c.0, &c.1, &c.2, &c.3, &c.4])
        .map(drop)
}
