//! SPEC §3 history keys: a row is stored under a key that may differ from
//! its record's own `invocation_id` (the reference's
//! `_add_histories(ids, record)` stores ONE record under EVERY id of `ids`).
//! Identity is (key, instant, status); every read answers by key.

use taskstate_core::{ErrorKind, HistoryRow, InvocationStatus as S, StateBackend, TimeRange};

use super::helpers::{all_history, all_ids};
use crate::data::*;

/// One record under three keys, as pynenc writes a batch status change.
pub fn keys_one_record_under_several_keys(b: &dyn StateBackend) {
    let r = hist("a", S::Pending, at(1));
    let (a, k2, k3) = (id("a"), id("b"), id("c"));
    b.add_history_rows(&[
        HistoryRow::under(&a, &r),
        HistoryRow::under(&k2, &r),
        HistoryRow::under(&k3, &r),
    ])
    .unwrap();
    for key in [&a, &k2, &k3] {
        let h = b.get_history(key).unwrap();
        assert_eq!(h, std::slice::from_ref(&r), "history under {key}");
        // The record reads back as stored: its own id, not the key.
        assert_eq!(h[0].invocation_id, a);
    }
    assert_eq!(
        all_ids(b, TimeRange::all(), 10).concat(),
        [a.clone(), k2.clone(), k3.clone()]
    );
    assert_eq!(
        all_history(b, TimeRange::all(), 10).concat(),
        [r.clone(), r.clone(), r]
    );
}

/// A record whose own id is not among its keys is not under its own id.
pub fn keys_record_not_under_its_own_id_unless_asked(b: &dyn StateBackend) {
    let r = hist("own", S::Running, at(2));
    let (x, y) = (id("x"), id("y"));
    b.add_history_rows(&[HistoryRow::under(&x, &r), HistoryRow::under(&y, &r)])
        .unwrap();
    assert!(b.get_history(&id("own")).unwrap().is_empty());
    assert_eq!(all_ids(b, TimeRange::all(), 10).concat(), [x, y]);
}

/// Identity is per key: storing the rows again keeps one per key, and a
/// replacement under one key leaves the other keys' rows alone.
pub fn keys_identity_is_key_instant_status(b: &dyn StateBackend) {
    let r = hist("a", S::Running, at(1));
    let (a, k2) = (id("a"), id("b"));
    let rows = [HistoryRow::under(&a, &r), HistoryRow::under(&k2, &r)];
    b.add_history_rows(&rows).unwrap();
    b.add_history_rows(&rows).unwrap();
    assert_eq!(b.get_history(&a).unwrap(), std::slice::from_ref(&r));
    assert_eq!(b.get_history(&k2).unwrap(), std::slice::from_ref(&r));
    assert_eq!(all_history(b, TimeRange::all(), 10).concat().len(), 2);

    let mut again = r.clone();
    again.runner_context_id = taskstate_core::RunnerId::new("runner-2");
    b.add_history_rows(&[HistoryRow::under(&k2, &again)])
        .unwrap();
    assert_eq!(b.get_history(&a).unwrap(), std::slice::from_ref(&r));
    assert_eq!(b.get_history(&k2).unwrap(), std::slice::from_ref(&again));
    // The replaced row takes the latest insertion position.
    assert_eq!(all_history(b, TimeRange::all(), 10).concat(), [r, again]);
}

/// Rows under keys page like any others: every row once, by (instant,
/// insertion order), at every page size.
pub fn keys_rows_page_in_order(b: &dyn StateBackend) {
    let (k1, k2, k3) = (id("k1"), id("k2"), id("k3"));
    let r1 = hist("k1", S::Registered, at(1));
    let r2 = hist("k1", S::Pending, at(1));
    let r3 = hist("z", S::Running, at(2));
    b.add_history_rows(&[
        HistoryRow::under(&k1, &r1),
        HistoryRow::under(&k3, &r1),
        HistoryRow::under(&k2, &r1),
    ])
    .unwrap();
    b.add_history_rows(&[HistoryRow::under(&k2, &r3), HistoryRow::under(&k1, &r2)])
        .unwrap();
    let want = [r1.clone(), r1.clone(), r1.clone(), r2.clone(), r3.clone()];
    for page in 1..=6 {
        let pages = all_history(b, TimeRange::all(), page);
        assert!(pages.iter().all(|p| p.len() <= page));
        assert_eq!(pages.concat(), want, "page size {page}");
        let ids = all_ids(b, TimeRange::all(), page).concat();
        assert_eq!(
            ids,
            [k1.clone(), k2.clone(), k3.clone()],
            "page size {page}"
        );
    }
    // Ranges select rows by the record's instant, per key.
    let only_t2 = TimeRange::new(at(2), at(2));
    assert_eq!(all_ids(b, only_t2, 1).concat(), std::slice::from_ref(&k2));
    assert_eq!(
        all_history(b, only_t2, 1).concat(),
        std::slice::from_ref(&r3)
    );
    assert_eq!(b.get_history(&k2).unwrap(), [r1.clone(), r3]);
    assert_eq!(b.get_history(&k1).unwrap(), [r1, r2]);
}

/// An empty or over-long key is invalid input and the batch stores nothing.
pub fn keys_bad_key_refuses_the_whole_batch(b: &dyn StateBackend) {
    let r = hist("a", S::Running, at(1));
    let (a, empty) = (id("a"), id(""));
    let long = id(&"k".repeat(taskstate_core::MAX_ID_BYTES + 1));
    for bad in [&empty, &long] {
        let e = b
            .add_history_rows(&[HistoryRow::under(&a, &r), HistoryRow::under(bad, &r)])
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    }
    assert!(b.get_history(&a).unwrap().is_empty());
    assert!(all_history(b, TimeRange::all(), 10).concat().is_empty());
}

/// Purge removes rows under every key.
pub fn keys_purge_removes_keyed_rows(b: &dyn StateBackend) {
    let r = hist("a", S::Running, at(1));
    let k2 = id("b");
    b.add_history_rows(&[HistoryRow::under(&k2, &r)]).unwrap();
    b.purge().unwrap();
    assert!(b.get_history(&k2).unwrap().is_empty());
    assert!(all_ids(b, TimeRange::all(), 10).concat().is_empty());
}

/// A row stored at an explicit time key (pynenc's REAL of a naive
/// `_timestamp`) is ordered, ranged and identified by that key, reads back
/// with it, and keeps its record's own timestamp text.
pub fn keys_stored_time_key_orders_and_identifies(b: &dyn StateBackend) {
    use taskstate_core::TimeKey;
    let (k,) = (id("inv"),);
    // The record says t=1 s (UTC), but was stored at t=3 s (as pynenc does
    // for a naive timestamp written two hours east of UTC, say).
    let shifted = hist("inv", S::Registered, at(1));
    let plain = hist("inv", S::Running, at(2));
    let key3 = TimeKey::from_seconds(at(3).key().seconds());
    b.add_history_rows(&[
        HistoryRow::under(&k, &shifted).at_time_key(Some(key3)),
        HistoryRow::under(&k, &plain),
    ])
    .unwrap();
    // Ordered by the stored key: the shifted record comes last.
    assert_eq!(b.get_history(&k).unwrap(), [plain.clone(), shifted.clone()]);
    let rows = b.get_history_rows(&k).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].time_key, at(2).key());
    assert_eq!(rows[0].explicit_time_key(), None);
    assert_eq!(rows[1].time_key, key3);
    assert_eq!(rows[1].explicit_time_key(), Some(key3));
    assert_eq!(rows[1].record, shifted);
    // Ranges select by the stored key, not the record's text.
    let at1 = TimeRange::new(at(1), at(1));
    assert!(all_history(b, at1, 10).concat().is_empty());
    let at3 = TimeRange::new(at(3), at(3));
    assert_eq!(
        all_history(b, at3, 10).concat(),
        std::slice::from_ref(&shifted)
    );
    assert_eq!(all_ids(b, at3, 10).concat(), std::slice::from_ref(&k));
    // Identity uses the stored key: the same record at its own instant is
    // another row; at the stored key again it replaces.
    b.add_history_rows(&[HistoryRow::under(&k, &shifted)])
        .unwrap();
    assert_eq!(b.get_history(&k).unwrap().len(), 3);
    let mut again = shifted.clone();
    again.runner_context_id = taskstate_core::RunnerId::new("again");
    b.add_history_rows(&[HistoryRow::under(&k, &again).at_time_key(Some(key3))])
        .unwrap();
    let rows = b.get_history_rows(&k).unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[2].record, again);
    assert_eq!(rows[2].time_key, key3);
}

/// A non-finite time key is invalid input; nothing is stored.
pub fn keys_non_finite_time_key_is_invalid(b: &dyn StateBackend) {
    use taskstate_core::TimeKey;
    let r = hist("inv", S::Running, at(1));
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let e = b
            .add_history_rows(&[
                HistoryRow::own(&r),
                HistoryRow::own(&r).at_time_key(Some(TimeKey::from_seconds(bad))),
            ])
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    }
    assert!(b.get_history(&id("inv")).unwrap().is_empty());
}
