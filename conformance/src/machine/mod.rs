//! The model-based test: random sequences of every operation, run against
//! the reference [`Model`] and an engine; every output must be equal.
//!
//! Ids come from small pools so that replacements, re-parenting, duplicate
//! history identities and timestamp ties happen often.

mod ops;

use std::marker::PhantomData;

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestRunner};
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest};

use ops::*;
pub use ops::{HistSpec, InvSpec, Op, Out, run_engine, run_model};

use crate::model::Model;
use crate::{Factory, Instance};

/// The reference state: the model plus the output of the last operation.
#[derive(Clone, Debug, Default)]
pub struct RefState {
    model: Model,
    last: Option<Out>,
}

/// The reference state machine (generation and the model side).
pub struct ModelMachine;

fn i() -> impl Strategy<Value = usize> {
    0..INVS.len()
}

fn op_strategy() -> BoxedStrategy<Op> {
    let inv_spec = (
        0..INVS.len(),
        // 1 in 12 parents is the empty id: invalid input, whole batch refused.
        prop::option::of(0..=INVS.len()),
        i(),
        0..TASKS.len(),
        0..3u8,
        prop::option::weighted(0.25, i()),
    )
        .prop_map(|(inv, parent, wf, task, args, parent_wf)| InvSpec {
            inv,
            parent,
            wf,
            task,
            args,
            parent_wf,
        });
    let hist_spec = (
        // 1 in 4 rows is stored under another invocation's key (SPEC §3).
        prop::option::weighted(0.25, i()),
        // 1 in 8 rows is stored at another time key (SPEC §3, pynenc's
        // naive timestamps).
        prop::option::weighted(0.125, 0..6u8),
        i(),
        0..6u8,
        any::<bool>(),
        0..STATUSES.len(),
        0..RUNNERS.len(),
    )
        .prop_map(
            |(key, stored_at, inv, t, shifted, status, runner)| HistSpec {
                key,
                stored_at,
                inv,
                t,
                shifted,
                status,
                runner,
            },
        )
        .boxed();
    let chain =
        prop::sample::subsequence((0..RUNNERS.len()).collect::<Vec<_>>(), 1..=3).prop_shuffle();
    let t = 0..6u8;
    prop_oneof![
        4 => prop::collection::vec(inv_spec, 1..4).prop_map(Op::Upsert),
        2 => i().prop_map(Op::GetInvocation),
        2 => i().prop_map(Op::Children),
        2 => (prop::option::of(i()), prop::option::of(0..TASKS.len())).prop_map(|(w, t)| Op::ByWorkflow(w, t)),
        5 => prop::collection::vec(hist_spec.clone(), 1..4).prop_map(Op::AddHistories),
        2 => (hist_spec, prop::collection::vec(i(), 1..4)).prop_map(|(h, k)| Op::AddUnderKeys(h, k)),
        2 => i().prop_map(Op::GetHistory),
        2 => (t.clone(), t.clone(), 1..4usize).prop_map(|(lo, hi, page)| Op::HistoryRange { lo, hi, page }),
        2 => (t.clone(), t, 1..4usize).prop_map(|(lo, hi, page)| Op::IdsRange { lo, hi, page }),
        1 => (i(), 0..VALUES.len()).prop_map(|(a, v)| Op::SetResult(a, v)),
        1 => i().prop_map(Op::GetResult),
        1 => (i(), 0..VALUES.len()).prop_map(|(a, v)| Op::SetException(a, v)),
        1 => i().prop_map(Op::GetException),
        2 => (i(), 0..TASKS.len(), prop::option::of(i())).prop_map(|(wf, task, parent)| Op::StoreRun { wf, task, parent }),
        1 => Just(Op::Types),
        1 => Just(Op::Runs),
        1 => (0..TASKS.len()).prop_map(Op::RunsOf),
        1 => (i(), i()).prop_map(|(w, s)| Op::StoreSub(w, s)),
        1 => i().prop_map(Op::Subs),
        1 => (i(), 0..KEYS.len(), 0..VALUES.len()).prop_map(|(w, k, v)| Op::SetData(w, k, v)),
        1 => (i(), 0..KEYS.len()).prop_map(|(w, k)| Op::GetData(w, k)),
        1 => (0..APPS.len(), any::<bool>()).prop_map(|(a, c)| Op::StoreApp(a, c)),
        1 => (0..APPS.len()).prop_map(Op::GetApp),
        1 => Just(Op::Apps),
        2 => chain.prop_map(Op::StoreRunner),
        1 => (0..RUNNERS.len()).prop_map(Op::GetRunner),
        1 => prop::collection::vec(0..RUNNERS.len(), 0..4).prop_map(Op::GetRunners),
        2 => (0..PARTIALS.len()).prop_map(Op::MatchRunners),
        1 => Just(Op::ResultIds),
        1 => Just(Op::ExceptionIds),
        1 => Just(Op::AllSubs),
        1 => Just(Op::AllData),
        1 => Just(Op::Purge),
        3 => (0..7u8, any::<bool>(), 1..4usize).prop_map(|(cutoff, dry, chunk)| Op::Prune { cutoff, dry, chunk }),
        1 => (prop::collection::vec(0..=INVS.len(), 1..3), any::<bool>()).prop_map(|(ids, dry)| Op::DeleteTrees(ids, dry)),
    ]
    .boxed()
}

impl ReferenceStateMachine for ModelMachine {
    type State = RefState;
    type Transition = Op;

    fn init_state() -> BoxedStrategy<RefState> {
        Just(RefState::default()).boxed()
    }

    fn transitions(_: &RefState) -> BoxedStrategy<Op> {
        op_strategy()
    }

    fn apply(mut state: RefState, op: &Op) -> RefState {
        state.last = Some(run_model(&mut state.model, op));
        state
    }
}

/// The engine side of the model test, for the engine that `F` builds.
pub struct EngineMachine<F>(PhantomData<F>);

impl<F: Factory> StateMachineTest for EngineMachine<F> {
    type SystemUnderTest = Instance<F>;
    type Reference = ModelMachine;

    fn init_test(_: &RefState) -> Instance<F> {
        Instance::<F>::create()
            .unwrap_or_else(|| panic!("the factory stopped offering an engine mid-run"))
    }

    fn apply(sut: Instance<F>, state: &RefState, op: Op) -> Instance<F> {
        let got = run_engine(&sut.backend, &op);
        assert_eq!(
            Some(&got),
            state.last.as_ref(),
            "engine and model differ on {op:?}"
        );
        sut
    }
}

/// Default number of generated sequences (each up to 60 operations); the
/// `PROPTEST_CASES` environment variable overrides it.
pub const DEFAULT_CASES: u32 = 64;

/// Runs the model-based test against `F`'s engine. `regressions` is the file
/// where failing seeds are kept (commit it).
pub fn run_model_test<F: Factory>(regressions: &'static str) {
    if Instance::<F>::create().is_none() {
        return;
    }
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    let config = Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(regressions))),
        ..Config::default()
    };
    let mut runner = TestRunner::new(config.clone());
    let result = runner.run(
        &ModelMachine::sequential_strategy(1..60),
        |(init, ops, seen)| {
            EngineMachine::<F>::test_sequential(config.clone(), init, ops, seen);
            Ok(())
        },
    );
    if let Err(e) = result {
        panic!("model-based test failed: {e}");
    }
}
