//! Exact counts under churn: after the churn stops, every state a full
//! socket can be in equals /proc/net, and no event was lost.

use std::time::Duration;

use netconn_integration::{Netns, Table, Watch, churn, mix, only, table_of, truth};

/// States only full sockets are in; time-wait and request mini-sockets
/// (TIME_WAIT, FIN_WAIT2 after an orphaned close, SYN_RECV) are not yet
/// kept live by watch.
const FULL_SOCKET_STATES: [&str; 8] = [
    "ESTABLISHED",
    "SYN_SENT",
    "FIN_WAIT1",
    "CLOSE_WAIT",
    "LAST_ACK",
    "LISTEN",
    "CLOSING",
    "NONE",
];

fn comparable(t: &Table) -> Table {
    only(t, &FULL_SOCKET_STATES)
}

/// Waits (bounded) for the namespace to come to rest, then for a record
/// computed after that.
fn at_rest(ns: &Netns, watch: &mut Watch) -> (serde_json::Value, Table) {
    ns.run(mix::settle);
    let record = watch.fresh_record();
    (record, truth(ns))
}

#[test]
fn seeded_churn_ends_at_the_truth() {
    for seed in [1u64, 2, 3] {
        let ns = Netns::new();
        let (mut watch, _) = Watch::start(&ns, &["--interval", "300ms"]);
        let worker = ns.worker();
        let (held, stats) = worker.exec(move || churn::run(seed, 4000, Duration::from_secs(20)));
        assert!(
            stats.connects > 500,
            "seed {seed}: too little churn: {stats:?}"
        );
        let (record, want) = at_rest(&ns, &mut watch);
        assert_eq!(
            comparable(&table_of(&record)),
            comparable(&want),
            "seed {seed} ({stats:?}), record {record}"
        );
        assert_eq!(record["lost_events"], 0, "seed {seed}");
        // Everything closed: back to the empty table.
        worker.exec(move || drop(held));
        let (record, want) = at_rest(&ns, &mut watch);
        assert_eq!(
            comparable(&table_of(&record)),
            comparable(&want),
            "seed {seed}"
        );
    }
}

#[test]
fn maximum_rate_churn_ends_at_the_truth() {
    let ns = Netns::new();
    let (mut watch, _) = Watch::start(&ns, &["--interval", "500ms"]);
    let out = ns.run_cmd(
        env!("CARGO_BIN_EXE_netconn-churn"),
        &["churn", "--threads", "4", "--seconds", "5"],
    );
    let rate: serde_json::Value = serde_json::from_str(out.trim()).expect("churn output");
    assert!(rate["connections"].as_u64().unwrap() > 10_000, "{rate}");
    let (record, want) = at_rest(&ns, &mut watch);
    assert_eq!(
        comparable(&table_of(&record)),
        comparable(&want),
        "record {record}"
    );
    assert_eq!(record["lost_events"], 0, "{record}");
}
