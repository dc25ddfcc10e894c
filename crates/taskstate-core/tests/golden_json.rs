//! Golden tests: the JSON pynenc 0.1.0 wrote into the fixture database
//! (`history_json` and `app_info_json` columns, extracted to `tests/data/`)
//! decodes and re-encodes to the same bytes.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use taskstate_core::{AppInfo, InvocationHistory};

#[test]
fn history_json_round_trips_byte_identical() {
    let text = include_str!("data/history_json.txt");
    let mut n = 0;
    for line in text.lines() {
        let h = InvocationHistory::from_json(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(h.to_json(), line);
        n += 1;
    }
    assert_eq!(n, 43, "the fixture holds 43 history records");
}

#[test]
fn app_info_json_round_trips_byte_identical() {
    let line = include_str!("data/app_info_json.txt").trim_end_matches('\n');
    let info = AppInfo::from_json(line).unwrap();
    assert_eq!(info.app_id.as_str(), "shop_fixture_app");
    assert_eq!(info.module, "pynenc.app");
    assert_eq!(info.config_filepath, None);
    assert_eq!(info.to_json(), line);
}

#[test]
fn non_ascii_and_offsets_round_trip() {
    // As Python writes: non-ASCII escaped, a +02:00 offset kept.
    let line = r#"{"invocation_id": "inv-\u00e9\ud83d\ude00", "_timestamp": "2025-01-15T14:00:00.000001+02:00", "status_record": {"status": "running", "runner_id": "r\"1", "timestamp": "2025-01-15T12:00:00+00:00"}, "runner_context_id": "r\"1", "registered_by_inv_id": "p"}"#;
    let h = InvocationHistory::from_json(line).unwrap();
    assert_eq!(h.invocation_id.as_str(), "inv-é😀");
    assert_eq!(h.timestamp.offset_secs(), 7200);
    assert_eq!(h.to_json(), line);
}
