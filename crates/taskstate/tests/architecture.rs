//! The crate-dependency invariants of ARCHITECTURE.md, read from
//! `cargo metadata`: core depends on no engine; engines depend on core and
//! never on each other; only the facade depends on engines (besides
//! dev-dependencies for tests).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::process::Command;

/// package → its normal (non-dev) dependencies within the workspace.
fn workspace_deps() -> BTreeMap<String, Vec<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<String> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null())
                .map(|d| d["name"].as_str().unwrap().to_owned())
                .filter(|n| names.contains(n))
                .collect();
            (p["name"].as_str().unwrap().to_owned(), deps)
        })
        .collect()
}

#[test]
fn dependency_invariants_hold() {
    let deps = workspace_deps();
    assert!(deps.contains_key("taskstate-core"));
    // The engines are the workspace crates the facade depends on besides
    // core: each must have its entry in the facade's registry, by name.
    let engines: Vec<String> = deps["taskstate"]
        .iter()
        .filter(|d| *d != "taskstate-core")
        .cloned()
        .collect();
    let registered: Vec<String> = taskstate::ENGINES
        .iter()
        .map(|e| format!("taskstate-{}", e.name))
        .collect();
    let mut sorted = engines.clone();
    sorted.sort();
    let mut want = registered.clone();
    want.sort();
    assert_eq!(sorted, want, "every engine crate has one ENGINES entry");
    let engines: Vec<&str> = engines.iter().map(String::as_str).collect();
    assert_eq!(
        deps["taskstate-core"],
        Vec::<String>::new(),
        "core depends on nothing of ours"
    );
    for &e in &engines {
        assert_eq!(deps[e], ["taskstate-core"], "{e} depends only on core");
    }
    assert_eq!(
        deps["taskstate-conformance"],
        ["taskstate-core"],
        "the suite depends on no engine"
    );
    assert_eq!(
        deps["taskstate-python"],
        ["taskstate"],
        "the Python extension reaches the engines through the facade only"
    );
    for (pkg, d) in &deps {
        if pkg != "taskstate" && pkg != "taskstate-benches" {
            for &e in &engines {
                assert!(
                    !d.contains(&e.to_owned()),
                    "{pkg} must not depend on engine {e}"
                );
            }
        }
    }
}
