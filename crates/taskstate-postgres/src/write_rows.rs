//! The bulk write: rows of any kinds in one transaction, one `UNNEST`
//! statement per kind present, and this engine's own input rule (no NUL in
//! text).

use std::collections::HashMap;

use taskstate_core::{Error, InvocationId, Result, Row, RunnerId};

use crate::PostgresBackend;
use crate::encode::{exec_history, exec_invocations, history_columns, invocation_columns};

/// Keeps, of the items sharing a key, only the last (ON CONFLICT cannot
/// touch a row twice in one statement; within a call a later row wins),
/// in their original order.
fn last_of<T, K: std::hash::Hash + Eq>(items: Vec<T>, key: impl Fn(&T) -> K) -> Vec<T> {
    let mut last: HashMap<K, usize> = HashMap::new();
    for (i, it) in items.iter().enumerate() {
        last.insert(key(it), i);
    }
    items
        .into_iter()
        .enumerate()
        .filter(|(i, it)| last.get(&key(it)) == Some(i))
        .map(|(_, it)| it)
        .collect()
}

/// Runner-context rows as column arrays (table order).
type RunnerColumns<'a> = (
    Vec<&'a str>,
    Vec<&'a str>,
    Vec<Option<&'a str>>,
    Vec<i64>,
    Vec<&'a str>,
    Vec<i64>,
);

/// The text a row stores as given (ids, keys, values; JSON columns are
/// written with NUL escaped, so they never hold one).
fn raw_texts(row: &Row) -> Vec<&str> {
    match row {
        Row::Invocation(p) => {
            let (inv, call) = &**p;
            let mut t = vec![
                inv.invocation_id.as_str(),
                call.call_id.key(),
                inv.workflow.workflow_id.as_str(),
                inv.workflow.workflow_type.key(),
            ];
            t.extend(inv.parent_invocation_id.as_ref().map(InvocationId::as_str));
            t.extend(
                inv.workflow
                    .parent_workflow_id
                    .as_ref()
                    .map(InvocationId::as_str),
            );
            t
        }
        Row::History(k, _) => vec![k.as_str()],
        Row::Result(k, v) | Row::Exception(k, v) => vec![k.as_str(), v.as_str()],
        Row::WorkflowRun(w) => {
            let mut t = vec![w.workflow_id.as_str(), w.workflow_type.key()];
            t.extend(w.parent_workflow_id.as_ref().map(InvocationId::as_str));
            t
        }
        Row::SubInvocation(w, s) => vec![w.as_str(), s.as_str()],
        Row::WorkflowData(w, k, v) => vec![w.as_str(), k.as_str(), v.as_str()],
        Row::AppInfo(a) => vec![a.app_id.as_str()],
        Row::RunnerContext(c, p) => {
            let mut t = vec![
                c.runner_id.as_str(),
                c.runner_cls.as_str(),
                c.hostname.as_str(),
            ];
            t.extend(p.as_ref().map(RunnerId::as_str));
            t
        }
    }
}

/// This engine's own input rule: PostgreSQL text cannot hold a NUL
/// character.
pub(crate) fn no_nul_in_text(row: &Row) -> Result<()> {
    if raw_texts(row).iter().any(|t| t.contains('\0')) {
        return Err(Error::InvalidInput(format!(
            "{} row: PostgreSQL text cannot hold NUL characters",
            row.kind()
        )));
    }
    Ok(())
}

/// Writes `rows` in one transaction, one statement per kind present.
pub(crate) fn write_rows(b: &PostgresBackend, rows: &[Row]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut invocations = Vec::new();
    let mut history = Vec::new();
    let mut results = Vec::new();
    let mut exceptions = Vec::new();
    let mut workflows = Vec::new();
    let mut subs: (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
    let mut data = Vec::new();
    let mut apps = Vec::new();
    let mut runners = Vec::new();
    for r in rows {
        match r {
            Row::Invocation(p) => invocations.push((&p.0, &p.1)),
            Row::History(..) => {
                if let Some(h) = r.as_history_row() {
                    history.push(h);
                }
            }
            Row::Result(id, v) => results.push((id.as_str(), v.as_str())),
            Row::Exception(id, v) => exceptions.push((id.as_str(), v.as_str())),
            Row::WorkflowRun(w) => workflows.push(w),
            Row::SubInvocation(w, s) => {
                subs.0.push(w.as_str());
                subs.1.push(s.as_str());
            }
            Row::WorkflowData(w, k, v) => data.push((w.as_str(), k.as_str(), v.as_str())),
            Row::AppInfo(a) => apps.push((a.app_id.clone(), a.to_json())),
            Row::RunnerContext(c, p) => runners.push((c, p)),
        }
    }
    let inv_cols = invocation_columns(invocations.iter().map(|(i, c)| (*i, *c)));
    let hist_cols = history_columns(&history);
    let pairs = |v: Vec<(&str, &str)>| -> (Vec<String>, Vec<String>) {
        last_of(v, |(k, _)| *k)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .unzip()
    };
    let res = pairs(results);
    let exc = pairs(exceptions);
    let wf = last_of(workflows, |w| w.workflow_id.as_str().to_owned());
    let wf_cols: (Vec<&str>, Vec<&str>, Vec<Option<&str>>) = (
        wf.iter().map(|w| w.workflow_id.as_str()).collect(),
        wf.iter().map(|w| w.workflow_type.key()).collect(),
        wf.iter()
            .map(|w| w.parent_workflow_id.as_ref().map(InvocationId::as_str))
            .collect(),
    );
    let data = last_of(data, |(w, k, _)| (*w, *k));
    let data_cols: (Vec<&str>, Vec<&str>, Vec<&str>) = (
        data.iter().map(|d| d.0).collect(),
        data.iter().map(|d| d.1).collect(),
        data.iter().map(|d| d.2).collect(),
    );
    let apps = last_of(apps, |(id, _)| id.clone());
    let app_cols: (Vec<&str>, Vec<&str>) = (
        apps.iter().map(|a| a.0.as_str()).collect(),
        apps.iter().map(|a| a.1.as_str()).collect(),
    );
    let runners = last_of(runners, |(c, _)| c.runner_id.as_str().to_owned());
    let run_cols: RunnerColumns<'_> = (
        runners.iter().map(|(c, _)| c.runner_id.as_str()).collect(),
        runners.iter().map(|(c, _)| c.runner_cls.as_str()).collect(),
        runners
            .iter()
            .map(|(_, p)| p.as_ref().map(RunnerId::as_str))
            .collect(),
        runners.iter().map(|(c, _)| c.pid).collect(),
        runners.iter().map(|(c, _)| c.hostname.as_str()).collect(),
        runners.iter().map(|(c, _)| c.thread_id).collect(),
    );
    let sql = &b.sql;
    b.write("write rows", true, |db| {
        if !app_cols.0.is_empty() {
            db.execute(&sql.bulk.apps, &[&app_cols.0, &app_cols.1])?;
        }
        if !run_cols.0.is_empty() {
            db.execute(
                &sql.bulk.runners,
                &[
                    &run_cols.0,
                    &run_cols.1,
                    &run_cols.2,
                    &run_cols.3,
                    &run_cols.4,
                    &run_cols.5,
                ],
            )?;
        }
        if let Some(c) = &inv_cols {
            exec_invocations(db, sql, c)?;
        }
        if let Some(h) = &hist_cols {
            exec_history(db, sql, h)?;
        }
        if !res.0.is_empty() {
            db.execute(&sql.bulk.results, &[&res.0, &res.1])?;
        }
        if !exc.0.is_empty() {
            db.execute(&sql.bulk.exceptions, &[&exc.0, &exc.1])?;
        }
        if !wf_cols.0.is_empty() {
            db.execute(&sql.bulk.workflows, &[&wf_cols.0, &wf_cols.1, &wf_cols.2])?;
        }
        if !subs.0.is_empty() {
            db.execute(&sql.bulk.subs, &[&subs.0, &subs.1])?;
        }
        if !data_cols.0.is_empty() {
            db.execute(&sql.bulk.data, &[&data_cols.0, &data_cols.1, &data_cols.2])?;
        }
        Ok(())
    })
}
