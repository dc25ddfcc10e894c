//! SPEC §4 rule 5: time ranges (inclusive, by instant) and keyset paging.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use taskstate_core::{
    Cursor, ErrorKind, InvocationId, InvocationStatus as S, StateBackend, TimeRange, Timestamp,
};

use super::helpers::*;
use crate::data::*;

pub fn rule5_range_bounds_inclusive(b: &dyn StateBackend) {
    let (lo, hi) = (at(10), at(20));
    b.add_histories(&[
        hist("before", S::Registered, lo.add_micros(-1)),
        hist("lo", S::Registered, lo),
        hist("hi", S::Registered, hi),
        hist("after", S::Registered, hi.add_micros(1)),
    ])
    .unwrap();
    let r = TimeRange::new(lo, hi);
    let got: Vec<_> = all_history(b, r, 10)
        .concat()
        .into_iter()
        .map(|h| h.invocation_id.into_string())
        .collect();
    assert_eq!(got, ["lo", "hi"]);
    assert_eq!(strs(&all_ids(b, r, 10).concat()), ["hi", "lo"]);
    // A one-instant range.
    assert_eq!(all_history(b, TimeRange::new(lo, lo), 10).concat().len(), 1);
}

pub fn rule5_range_compares_instants_across_offsets(b: &dyn StateBackend) {
    // 13:00+02:00 is 11:00 UTC: inside [10:30Z, 11:30Z] though its wall clock is not.
    let ts = "2025-01-15T13:00:00+02:00".parse::<Timestamp>().unwrap();
    b.add_histories(&[hist("inv", S::Registered, ts)]).unwrap();
    let r = TimeRange::new(
        "2025-01-15T10:30:00+00:00".parse().unwrap(),
        "2025-01-15T11:30:00+00:00".parse().unwrap(),
    );
    let got = all_history(b, r, 10).concat();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].timestamp.to_string(), "2025-01-15T13:00:00+02:00");
    let r2 = TimeRange::new(
        "2025-01-15T12:30:00+00:00".parse().unwrap(),
        "2025-01-15T13:30:00+00:00".parse().unwrap(),
    );
    assert!(all_history(b, r2, 10).is_empty());
}

pub fn rule5_paging_returns_every_row_once(b: &dyn StateBackend) {
    let mut recs = Vec::new();
    for i in 0..23i64 {
        // Some ties (i / 2) to exercise the tie-breaker across page edges.
        recs.push(hist(
            &format!("inv-{:02}", i % 7),
            S::ALL[(i % 14) as usize],
            at(i / 2),
        ));
    }
    b.add_histories(&recs).unwrap();
    let whole = all_history(b, TimeRange::all(), 1000).concat();
    assert_eq!(whole.len(), 23);
    for page in [1usize, 2, 3, 5, 7, 22, 23, 24] {
        let pages = all_history(b, TimeRange::all(), page);
        assert!(pages.iter().all(|p| !p.is_empty() && p.len() <= page));
        assert_eq!(pages.len(), 23usize.div_ceil(page), "page size {page}");
        assert_eq!(pages.concat(), whole, "page size {page}");
        let ids = all_ids(b, TimeRange::all(), page).concat();
        assert_eq!(
            strs(&ids),
            [
                "inv-00", "inv-01", "inv-02", "inv-03", "inv-04", "inv-05", "inv-06"
            ]
        );
    }
}

pub fn rule5_next_cursor_only_when_more_rows(b: &dyn StateBackend) {
    b.add_histories(&[
        hist("a", S::Registered, at(1)),
        hist("b", S::Registered, at(2)),
    ])
    .unwrap();
    let r = TimeRange::all();
    let p = b.history_in_timerange(&r, None, 2).unwrap();
    assert_eq!(p.items.len(), 2);
    assert!(
        p.next.is_none(),
        "an exactly full last page has no next cursor"
    );
    let p = b.history_in_timerange(&r, None, 1).unwrap();
    let next = p.next.expect("one more row follows");
    let p2 = b.history_in_timerange(&r, Some(&next), 1).unwrap();
    assert_eq!(p2.items[0].invocation_id.as_str(), "b");
    assert!(p2.next.is_none());
    let ids = b.invocation_ids_in_timerange(&r, None, 2).unwrap();
    assert_eq!(strs(&ids.items), ["a", "b"]);
    assert!(ids.next.is_none());
    let empty = b
        .history_in_timerange(&TimeRange::new(at(100), at(200)), None, 5)
        .unwrap();
    assert!(empty.items.is_empty() && empty.next.is_none());
}

pub fn rule5_paging_stable_under_writes_outside_range(b: &dyn StateBackend) {
    for i in 0..10 {
        b.add_histories(&[hist(&format!("in-{i}"), S::Registered, at(100 + i))])
            .unwrap();
    }
    let r = TimeRange::new(at(100), at(109));
    let (mut cursor, mut ids_cursor): (Option<Cursor>, Option<Cursor>) = (None, None);
    let (mut seen, mut ids_seen) = (Vec::new(), Vec::new());
    let (mut h_done, mut i_done) = (false, false);
    for round in 0..20i64 {
        if h_done && i_done {
            break;
        }
        // Writes before and after the range, with ids sorting among ours.
        b.add_histories(&[
            hist(&format!("in-{round}x"), S::Pending, at(50 - round)),
            hist(&format!("in-0{round}"), S::Pending, at(200 + round)),
        ])
        .unwrap();
        if !h_done {
            let p = b.history_in_timerange(&r, cursor.as_ref(), 3).unwrap();
            seen.extend(p.items);
            h_done = p.next.is_none();
            cursor = p.next;
        }
        if !i_done {
            let q = b
                .invocation_ids_in_timerange(&r, ids_cursor.as_ref(), 3)
                .unwrap();
            ids_seen.extend(q.items);
            i_done = q.next.is_none();
            ids_cursor = q.next;
        }
    }
    assert!(h_done && i_done, "paging did not finish in 20 rounds");
    let got: Vec<_> = seen
        .into_iter()
        .map(|h| h.invocation_id.into_string())
        .collect();
    let want: Vec<String> = (0..10).map(|i| format!("in-{i}")).collect();
    assert_eq!(got, want);
    let ids: Vec<String> = ids_seen
        .into_iter()
        .map(InvocationId::into_string)
        .collect();
    assert_eq!(ids, want, "every id once, none from outside the range");
}

pub fn rule5_inverted_range_is_empty(b: &dyn StateBackend) {
    b.add_histories(&[hist("a", S::Registered, at(1))]).unwrap();
    let r = TimeRange::new(at(2), at(0));
    assert!(all_history(b, r, 10).is_empty());
    assert!(all_ids(b, r, 10).is_empty());
}

pub fn rule5_page_size_zero_and_bad_cursor_are_invalid(b: &dyn StateBackend) {
    b.add_histories(&[hist("a", S::Registered, at(1))]).unwrap();
    let r = TimeRange::all();
    assert_eq!(
        b.history_in_timerange(&r, None, 0).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        b.invocation_ids_in_timerange(&r, None, 0)
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
    let junk = Cursor::from_token("not a cursor");
    assert_eq!(
        b.history_in_timerange(&r, Some(&junk), 5)
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        b.invocation_ids_in_timerange(&r, Some(&junk), 5)
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
}

pub fn rule5_far_past_and_future_timestamps(b: &dyn StateBackend) {
    let recs = [
        hist_at(
            "inv",
            S::Success,
            "9999-12-31T23:59:59.999999+00:00".parse().unwrap(),
        ),
        hist_at(
            "inv",
            S::Registered,
            "0001-01-01T00:00:00+00:00".parse().unwrap(),
        ),
        hist_at(
            "inv",
            S::Pending,
            "1969-12-31T23:59:59.999999-05:00".parse().unwrap(),
        ),
        hist_at(
            "inv",
            S::Running,
            "2106-02-07T06:28:16.000001+00:00".parse().unwrap(),
        ),
    ];
    b.add_histories(&recs).unwrap();
    let h = b.get_history(&id("inv")).unwrap();
    assert_eq!(
        h,
        [
            recs[1].clone(),
            recs[2].clone(),
            recs[3].clone(),
            recs[0].clone()
        ]
    );
    assert_eq!(all_history(b, TimeRange::all(), 3).concat(), h);
}
