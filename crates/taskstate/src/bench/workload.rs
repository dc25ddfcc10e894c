//! The reference workload of SPEC §7: invocations in groups of 50 (a root
//! and its children), three history records each, one result each — the
//! same the Python reference is measured with.

use taskstate_core::{
    CallDTO, InvocationDTO, InvocationHistory, InvocationId, InvocationStatus,
    InvocationStatusRecord, RunnerId, SerializedArguments, TaskId, TimeRange, Timestamp,
    WorkflowIdentity,
};

pub(crate) const TASKS: [&str; 4] = [
    "pynenc_bench.tasks.process_order",
    "pynenc_bench.tasks.charge_card",
    "pynenc_bench.tasks.shipping.book_courier",
    "pynenc_bench.tasks.send_email",
];
pub(crate) const RUNNER: &str = "bench-runner-0001";
pub(crate) const GROUP: usize = 50;

/// xorshift64*: uuid4s need randomness, not cryptography.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub(crate) fn uuid4(&mut self) -> String {
        let (a, b) = (self.next(), self.next());
        let hi = (a & !0xF000) | 0x4000; // version 4
        let lo = (b & !(0xC << 60)) | (0x8 << 60); // variant 10
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            hi >> 32,
            (hi >> 16) & 0xFFFF,
            hi & 0xFFFF,
            lo >> 48,
            lo & 0xFFFF_FFFF_FFFF
        )
    }
}

/// The workload, built before anything is timed.
pub struct Workload {
    /// The invocations with their calls, in order i = 0..N.
    pub pairs: Vec<(InvocationDTO, CallDTO)>,
    /// Three records per invocation, record 3i + k is step k of invocation i.
    pub histories: Vec<InvocationHistory>,
    /// Result i of invocation i.
    pub results: Vec<String>,
    /// Expected children of invocation i, ascending.
    pub children: Vec<Vec<InvocationId>>,
    /// The time range holding every record.
    pub range: TimeRange,
}

fn task(i: usize) -> TaskId {
    TASKS[i]
        .parse()
        .unwrap_or_else(|e| panic!("built-in task key {}: {e}", TASKS[i]))
}

impl Workload {
    /// Builds the SPEC §7 workload of `n` invocations; `seed` picks the uuids.
    #[must_use]
    pub fn build(n: usize, seed: u64) -> Self {
        let mut rng = Rng(seed | 1);
        let ids: Vec<InvocationId> = (0..n).map(|_| InvocationId::new(rng.uuid4())).collect();
        let t0 = Timestamp::now().add_micros(-3_600_000_000);
        let mut pairs = Vec::with_capacity(n);
        let mut histories = Vec::with_capacity(3 * n);
        let mut results = Vec::with_capacity(n);
        let mut children = vec![Vec::new(); n];
        for i in 0..n {
            let (root, j) = (i - i % GROUP, i % GROUP);
            let (task_id, parent) = if j == 0 {
                (task(0), None)
            } else {
                (task(1 + i % 3), Some(root + (j - 1) / 4))
            };
            let items: Vec<String> = (0..3)
                .map(|k| {
                    format!(
                        "{{\"sku\": \"SKU-{:04}\", \"qty\": {}}}",
                        (7 * i + k) % 1000,
                        1 + (i + k) % 5
                    )
                })
                .collect();
            let args = SerializedArguments::from_pairs([
                ("order_id", (100_000 + i).to_string()),
                ("customer", format!("\"customer-{:04}\"", i % 97)),
                ("items", format!("[{}]", items.join(", "))),
                (
                    "priority",
                    if i % 10 == 0 {
                        "\"high\""
                    } else {
                        "\"normal\""
                    }
                    .to_owned(),
                ),
            ]);
            let call = CallDTO::new(task_id, args);
            if let Some(p) = parent {
                children[p].push(ids[i].clone());
            }
            pairs.push((
                InvocationDTO {
                    invocation_id: ids[i].clone(),
                    call_id: call.call_id.clone(),
                    workflow: WorkflowIdentity {
                        workflow_id: ids[root].clone(),
                        workflow_type: task(0),
                        parent_workflow_id: None,
                    },
                    parent_invocation_id: parent.map(|p| ids[p].clone()),
                },
                call,
            ));
            for (k, status) in [
                InvocationStatus::Registered,
                InvocationStatus::Pending,
                InvocationStatus::Running,
            ]
            .into_iter()
            .enumerate()
            {
                let ts = t0.add_micros(10 * (3 * i + k) as i64);
                let registered = k == 0;
                histories.push(InvocationHistory {
                    invocation_id: ids[i].clone(),
                    timestamp: ts,
                    status_record: InvocationStatusRecord {
                        status,
                        runner_id: (!registered).then(|| RunnerId::new(RUNNER)),
                        timestamp: ts,
                    },
                    runner_context_id: RunnerId::new(RUNNER),
                    registered_by_inv_id: if registered {
                        parent.map(|p| ids[p].clone())
                    } else {
                        None
                    },
                });
            }
            results.push(format!(
                "{{\"order_id\": {}, \"total_cents\": {}, \"status\": \"charged\"}}",
                100_000 + i,
                1999 + i
            ));
        }
        for c in &mut children {
            c.sort();
        }
        let t_end = t0.add_micros(10 * (3 * n) as i64);
        Self {
            pairs,
            histories,
            results,
            children,
            range: TimeRange::new(t0, t_end),
        }
    }

    /// Number of invocations.
    #[must_use]
    pub fn n(&self) -> usize {
        self.pairs.len()
    }

    /// Every invocation id, ascending.
    #[must_use]
    pub fn sorted_ids(&self) -> Vec<InvocationId> {
        let mut ids: Vec<_> = self
            .pairs
            .iter()
            .map(|(i, _)| i.invocation_id.clone())
            .collect();
        ids.sort();
        ids
    }
}
