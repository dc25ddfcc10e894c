//! The executable contract of **taskstate**: every behaviour SPEC.md asks of
//! a [`StateBackend`], as tests that any engine runs with one macro line.
//!
//! - [`cases`]: one plain function per behaviour, taking `&dyn StateBackend`;
//! - [`machine`]: a model-based property test comparing random operation
//!   sequences against a plain reference [`model::Model`];
//! - [`suite!`]: expands to one `#[test]` per case (named after it, so
//!   `cargo test rule3_same_identity_replaces` selects one) plus
//!   `model_based`.
//!
//! # Testing your own engine
//!
//! Implement [`Factory`] to build a fresh, isolated engine per case (with a
//! guard that cleans up: a temp dir, a schema to drop) and add one line to a
//! test file of your crate. Cases run in parallel, so each `create` must
//! return an engine that shares nothing with the others.
//!
//! ```
//! // tests/conformance.rs of a crate `my-engine`, with
//! // `taskstate-conformance` as a dev-dependency:
//! use taskstate_conformance::Factory;
//! # mod my_engine { pub use taskstate_memory::MemoryBackend as MyBackend; }
//! use my_engine::MyBackend;
//!
//! pub struct MyFactory;
//!
//! impl Factory for MyFactory {
//!     type Backend = MyBackend;
//!     // Whatever must outlive the engine: e.g. a `tempfile::TempDir`.
//!     type Guard = ();
//!
//!     fn create() -> Option<(MyBackend, ())> {
//!         // Return None (after printing "skipped: set MY_URL") when the
//!         // engine cannot run here, e.g. its server is not configured.
//!         Some((MyBackend::new(), ()))
//!     }
//! }
//!
//! taskstate_conformance::suite!(MyFactory);
//! # fn main() {}
//! ```
//!
//! Failing model-test seeds are saved in `proptest-regressions/conformance-model.txt`
//! under your crate; commit that file so the seeds are replayed forever.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod cases;
pub mod data;
pub mod machine;
pub mod model;
pub mod processes;

pub use taskstate_core::StateBackend;

/// Builds fresh, isolated engines for the suite.
pub trait Factory: 'static {
    /// The engine under test.
    type Backend: StateBackend + 'static;
    /// What must live as long as the engine (temp dir, schema dropper);
    /// dropped right after it.
    type Guard: 'static;

    /// A new empty engine and its guard, or `None` when the engine cannot
    /// run in this environment (print a visible `skipped: …` line first).
    fn create() -> Option<(Self::Backend, Self::Guard)>;
}

/// An engine with its guard; the engine is dropped before the guard.
pub struct Instance<F: Factory> {
    /// The engine.
    pub backend: F::Backend,
    _guard: F::Guard,
}

impl<F: Factory> Instance<F> {
    /// Builds one through the factory.
    pub fn create() -> Option<Self> {
        F::create().map(|(backend, guard)| Instance {
            backend,
            _guard: guard,
        })
    }
}

/// A conformance case.
pub type Case = fn(&dyn StateBackend);

/// Runs one case against a fresh engine from `F`.
pub fn run_case<F: Factory>(case: Case) {
    if let Some(inst) = Instance::<F>::create() {
        case(&inst.backend);
    }
}

/// Calls `$callback!` with the list of every case name. The one place the
/// list is written; [`suite!`] and [`CASES`] are generated from it.
#[doc(hidden)]
#[macro_export]
macro_rules! __with_cases {
    ($callback:path, $($arg:tt)*) => {
        $callback! { [$($arg)*]
            spec8_01_history_orders_by_timestamp,
            spec8_02_upsert_same_invocation_four_times,
            spec8_03_call_without_arguments,
            spec8_04_call_with_arguments,
            spec8_05_unknown_invocation_is_not_found,
            spec8_06_history_records_round_trip_exactly,
            spec8_07_history_of_unknown_invocation_is_empty,
            spec8_08_result_set_get_missing,
            spec8_09_exception_set_get_missing,
            spec8_10_workflow_data,
            spec8_11_app_info_store_get_discover,
            spec8_12_workflow_run_stored_three_times_is_one,
            spec8_13_workflow_types_and_runs,
            spec8_14_workflow_sub_invocations,
            spec8_15_history_in_timerange,
            spec8_16_invocation_ids_in_timerange,
            spec8_17_runner_contexts,
            spec8_18_invocation_ids_by_workflow,
            spec8_19_purge_empties_every_table,
            rule2_lists_sorted_ascending_by_id,
            rule2_sort_is_code_point_order,
            rule2_history_ties_keep_insertion_order,
            rule2_history_ties_across_invocations_in_range,
            rule3_same_identity_replaces,
            rule3_replaced_record_takes_latest_insertion_position,
            rule3_same_instant_other_offset_is_same_record,
            rule3_same_timestamp_other_status_both_kept,
            rule3_duplicate_within_one_batch_keeps_last,
            rule4_upsert_reparents,
            rule4_upsert_moves_workflow_membership,
            rule4_workflow_filters_combine_with_and,
            rule4_workflow_run_restore_changes_type,
            rule5_range_bounds_inclusive,
            rule5_range_compares_instants_across_offsets,
            rule5_paging_returns_every_row_once,
            rule5_next_cursor_only_when_more_rows,
            rule5_paging_stable_under_writes_outside_range,
            rule5_inverted_range_is_empty,
            rule5_page_size_zero_and_bad_cursor_are_invalid,
            rule5_far_past_and_future_timestamps,
            rule6_runner_search_is_literal,
            rule6_runner_search_folds_ascii_case_only,
            rule7_absence_is_none_or_empty,
            rule8_strings_round_trip_exactly,
            rule8_empty_strings_as_values,
            rule9_concurrent_writers_lose_nothing,
            rule9_concurrent_same_key_writes_settle_on_one,
            input_empty_ids_are_invalid,
            input_call_id_mismatch_is_invalid,
            input_runner_chain_with_repeated_id_is_invalid,
            input_ids_longer_than_the_limit_are_invalid,
            input_timestamps_the_reference_cannot_read_are_invalid,
            batch_upsert_is_atomic,
            batch_history_is_atomic,
            batch_upsert_later_entry_wins,
            batch_empty_is_a_no_op,
            results_and_exceptions_replace,
            workflow_data_replaces_and_is_per_workflow,
            app_info_replaces,
            runner_context_chain_is_stored_and_returned_whole,
            runner_context_reparent_and_parent_update,
            add_status_for_sets_registered_by_only_for_registered,
            purge_twice_and_reuse_everything,
            engine_is_send_sync_and_names_itself,
            keys_one_record_under_several_keys,
            keys_record_not_under_its_own_id_unless_asked,
            keys_identity_is_key_instant_status,
            keys_rows_page_in_order,
            keys_bad_key_refuses_the_whole_batch,
            keys_purge_removes_keyed_rows,
            keys_stored_time_key_orders_and_identifies,
            keys_non_finite_time_key_is_invalid,
            bulk_snapshot_pages_every_kind_in_order,
            bulk_history_replacement_takes_the_latest_position,
            bulk_keyed_ranges_and_children,
            bulk_empty_and_inverted_key_ranges_read_nothing,
            bulk_write_rows_reads_back_through_point_operations,
            bulk_write_rows_is_atomic,
            bulk_write_rows_later_row_wins,
            bulk_snapshot_is_one_instant,
            bulk_bad_page_requests_are_invalid,
            prune_plain_tasks_by_final_status_and_cutoff,
            prune_workflow_tree_with_sub_workflow_goes_whole,
            prune_tree_with_one_running_invocation_is_kept_whole,
            prune_invocation_without_history_keeps_its_tree,
            prune_follows_every_kind_of_link,
            prune_judges_and_removes_history_by_key,
            prune_orphans_by_newest_timestamp,
            prune_pages_across_chunk_boundaries,
            prune_dry_run_equals_real_run,
            delete_trees_takes_whole_trees_whatever_status,
            prune_refuses_future_cutoff_and_bad_chunk,
            prune_with_concurrent_writers,
            monitor_lists_latest_status_newest_first,
            monitor_filters_combine,
            monitor_pages_with_cursor,
            monitor_latest_follows_ties_and_replacement,
            monitor_latest_is_by_key_and_stored_time_key,
            monitor_follows_deletes_purge_and_task_changes,
            monitor_workflow_runs_page_by_id,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __emit_tests {
    ([$factory:ty] $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::run_case::<$factory>($crate::cases::$case);
            }
        )*

        #[test]
        fn model_based() {
            $crate::machine::run_model_test::<$factory>(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/proptest-regressions/conformance-model.txt"
            ));
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __case_table {
    ([] $($case:ident),* $(,)?) => {
        /// Every case, by name, in suite order.
        pub const CASES: &[(&str, $crate::Case)] = &[
            $((stringify!($case), $crate::cases::$case as $crate::Case),)*
        ];
    };
}

__with_cases!(__case_table,);

/// Expands to the whole conformance suite for the engine built by a
/// [`Factory`]: one `#[test]` per case in [`CASES`], plus `model_based`.
///
/// See the crate docs for a complete example.
#[macro_export]
macro_rules! suite {
    ($factory:ty) => {
        $crate::__with_cases!($crate::__emit_tests, $factory);
    };
}

#[cfg(test)]
mod registration {
    use std::collections::BTreeSet;

    /// The names of every function in `src/cases/` (but its `helpers.rs`)
    /// that takes the engine as `&dyn StateBackend` and nothing else: the
    /// shape of a case.
    fn case_functions() -> BTreeSet<String> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/cases");
        let mut found = BTreeSet::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.file_name().is_some_and(|n| n == "helpers.rs") {
                continue;
            }
            let text = std::fs::read_to_string(path).unwrap();
            for line in text.lines() {
                let Some(rest) = line.strip_prefix("pub fn ") else {
                    continue;
                };
                if let Some((name, args)) = rest.split_once('(')
                    && args.starts_with("b: &dyn StateBackend)")
                {
                    found.insert(name.to_owned());
                }
            }
        }
        found
    }

    /// A case function left off the suite's list would never run; a name
    /// on the list without a function would not compile. Both directions
    /// are checked so the list and the functions cannot drift apart.
    #[test]
    fn every_case_function_is_in_the_suite() {
        let listed: BTreeSet<String> = super::CASES.iter().map(|(n, _)| (*n).to_owned()).collect();
        let defined = case_functions();
        let missing: Vec<_> = defined.difference(&listed).collect();
        assert!(
            missing.is_empty(),
            "case functions not in __with_cases!: {missing:?}"
        );
        assert_eq!(listed.len(), super::CASES.len(), "a case is listed twice");
        assert!(
            defined.len() >= 99,
            "found only {} case functions",
            defined.len()
        );
    }
}
