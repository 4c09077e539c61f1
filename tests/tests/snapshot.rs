//! `netconn snapshot` equals the kernel's truth for every state.

use netconn_integration::{Netns, mix, stdout_of, table_of, truth};

#[test]
fn snapshot_equals_proc_net_for_every_state() {
    for seed in [1, 2] {
        let ns = Netns::new();
        let worker = ns.worker();
        let held = worker.exec(move || mix::build(seed));

        let before = truth(&ns);
        let out = stdout_of(ns.netconn(&["snapshot"]));
        let after = truth(&ns);
        assert_eq!(before, after, "the mix must be at rest");

        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 1, "one record: {text}");
        let record: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(record["type"], "counts");
        assert_eq!(record["source"], "poll");
        assert_eq!(table_of(&record), before, "seed {seed}");
        // The mix really has the states this test is about.
        for state in [
            "ESTABLISHED",
            "LISTEN",
            "CLOSE_WAIT",
            "FIN_WAIT2",
            "TIME_WAIT",
            "SYN_SENT",
        ] {
            assert!(
                before.keys().any(|(_, s)| s == state),
                "mix lacks {state}: {before:?}"
            );
        }
        drop(held);
    }
}

#[test]
fn snapshot_works_unprivileged() {
    let ns = Netns::new();
    let worker = ns.worker();
    let held = worker.exec(|| mix::build(3));
    let want = truth(&ns);
    let out = stdout_of(ns.netconn_unprivileged(&["snapshot"]));
    let record: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(table_of(&record), want);
    drop(held);
}
