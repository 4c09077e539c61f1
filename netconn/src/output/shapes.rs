//! The records' shapes, pinned: every key in order with the JSON type of
//! its value, as README.md documents them. A change here is a change of
//! the contract with every pipeline reading netconn's output.

use serde_json::Value;

use super::conntrack::{AlertRecord, AlertThresholds, ConntrackRecord, Events, LiveFigures, Table};
use super::figures::{
    IntervalFigures, Lifecycle, ListenFigures, PortSeries, TcpFigures, TcpStates,
};
use super::record::{Correction, CountsRecord, Source};
use crate::model::counts::Counts;

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `key:type` of every top-level key, in order.
fn shape(record: &impl serde::Serialize) -> String {
    let v = serde_json::to_value(record).unwrap();
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| format!("{k}:{}", kind(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A daemon's counts record with every optional part left out; tests
/// add theirs with struct update syntax.
fn daemon_record(counts: &Counts) -> CountsRecord<'_> {
    CountsRecord {
        output_dropped: Some(0),
        resyncs: Some(0),
        ..CountsRecord::new("h", Source::Ebpf, 1, counts)
    }
}

#[test]
fn counts_record() {
    let counts = Counts::default();
    let tags = [("dc".to_owned(), "zrh1".to_owned())].into();
    let figures = TcpFigures::of(&Default::default());
    let ports = [PortSeries {
        addr_port: "80".into(),
        ip_version: 4,
        tags: Default::default(),
        states: TcpStates::default(),
        udp_socket: 0,
        tcp_metrics: Some(figures),
    }];
    let metrics = IntervalFigures {
        total: Some(figures),
        lifecycle: Some(Lifecycle {
            connected: 0,
            closed: 0,
        }),
        listen: ListenFigures {
            listen_overflows: 0,
            listen_drops: 0,
            listen_overflows_per_s: 0.0,
            listen_drops_per_s: 0.0,
        },
        top_ports: Some(Vec::new()),
        peers_untracked: Some(0),
    };
    let watch = CountsRecord {
        conn_records_lost: Some(0),
        verify: Some(&counts),
        tags: Some(&tags),
        ports: Some(&ports),
        tcp_metrics: Some(&metrics),
        ..daemon_record(&counts)
    };
    assert_eq!(
        shape(&watch.at("t")),
        "type:string time:string host:string source:string tags:object netns:number \
         connections:object ports:array tcp_metrics:object lost_events:number \
         conn_records_lost:number output_dropped:number resyncs:number \
         last_correction:null verify:object total:number"
    );
    let corrected = CountsRecord {
        last_correction: Some(Correction {
            time: "t",
            reason: "requested",
            delta: &counts,
        }),
        ..watch.clone()
    };
    let v = serde_json::to_value(corrected.at("t")).unwrap();
    assert_eq!(
        shape(&v["last_correction"]),
        "time:string reason:string delta:object"
    );
    assert_eq!(shape(&v["verify"]), "equal:bool diff:object");
    assert_eq!(
        shape(&v["tcp_metrics"]),
        "rtt_us:object retrans:number synack_retrans:number resets_sent:number \
         resets_received:number failed_connects:object accepted:number connected:number closed:number listen_overflows:number \
         listen_drops:number listen_overflows_per_s:number listen_drops_per_s:number \
         top_ports:array peers_untracked:number"
    );
    assert_eq!(
        shape(&v["ports"][0]),
        "addr_port:string ip_version:number tags:object states:object udp_socket:number tcp_metrics:object"
    );
    assert_eq!(
        shape(&v["connections"]),
        "tcp:object tcp6:object udp:object udp6:object"
    );
    assert_eq!(v["connections"]["tcp"].as_object().unwrap().len(), 11);
    // What snapshot and poll mode write: no eBPF keys.
    let snapshot = CountsRecord::new(watch.host, Source::Poll, watch.netns, watch.counts);
    assert_eq!(
        shape(&snapshot.at("t")),
        "type:string time:string host:string source:string netns:number \
         connections:object lost_events:number total:number"
    );
}

#[test]
fn conntrack_and_alert_records() {
    let table = Table {
        count: 14,
        max: 262144,
        utilization: 0.0053,
        stats: Some(Some(Default::default())),
        totals: Some(Default::default()),
        entries: Some(Default::default()),
        live: Some(LiveFigures {
            events: Events {
                new: Default::default(),
                destroy: Default::default(),
            },
            lost_events: 0,
            resyncs: 0,
        }),
        note: None,
    };
    let record = ConntrackRecord {
        kind: "conntrack",
        time: "t",
        host: "h",
        netns: 1,
        available: true,
        reason: None,
        table: Some(table),
    };
    assert_eq!(
        shape(&record),
        "type:string time:string host:string netns:number available:bool count:number \
         max:number utilization:number stats:object totals:object entries:object \
         events:object lost_events:number resyncs:number"
    );
    let unavailable = ConntrackRecord {
        available: false,
        reason: Some("conntrack is not loaded"),
        table: None,
        ..record
    };
    assert_eq!(
        shape(&unavailable),
        "type:string time:string host:string netns:number available:bool reason:string"
    );
    let alert = AlertRecord {
        kind: "alert",
        time: "t",
        host: "h",
        netns: 1,
        alert: crate::model::alert::Kind::ConntrackFull,
        status: "warning",
        utilization: 91.2,
        thresholds: AlertThresholds {
            warning: 90.0,
            critical: 95.0,
            clear: 85.0,
        },
    };
    assert_eq!(
        shape(&alert),
        "type:string time:string host:string netns:number alert:string status:string \
         utilization:number thresholds:object"
    );
}

#[test]
fn all_namespaces_records() {
    use super::record::{HostRecord, NetnsRecord};
    use crate::namespaces::owner::Owner;
    let counts = Counts::default();
    let owner = Owner {
        netns_name: Some("web".into()),
        cgroup: Some("/system.slice/docker-x.scope".into()),
        runtime: Some("docker"),
        container_id: Some("x".into()),
        k8s_pod_uid: Some("u".into()),
        k8s_pod_name: Some("p".into()),
        k8s_namespace: Some("default".into()),
        pids: vec![7],
        comm: vec!["nginx".into()],
    };
    assert_eq!(
        shape(&owner),
        "netns_name:string cgroup:string runtime:string container_id:string \
         k8s_pod_uid:string k8s_pod_name:string k8s_namespace:string pids:array comm:array"
    );
    // Unknown fields are left out, never null.
    assert_eq!(shape(&Owner::default()), "");
    let record = CountsRecord {
        namespace: Some(("container", &owner)),
        ..daemon_record(&counts)
    };
    assert_eq!(
        shape(&record.at("t")),
        "type:string time:string host:string source:string netns:number namespace:string \
         owner:object connections:object lost_events:number output_dropped:number \
         resyncs:number last_correction:null total:number"
    );
    let host = HostRecord {
        kind: "host",
        time: "t",
        host: "h",
        source: Source::Ebpf,
        namespaces: 3,
        namespaces_untracked: 1,
        untracked: &[7],
        connections: &counts,
        lost_events: 0,
        resyncs: Some(0),
        conn_records_lost: None,
        output_dropped: Some(0),
        total: 0,
    };
    assert_eq!(
        shape(&host),
        "type:string time:string host:string source:string namespaces:number \
         namespaces_untracked:number untracked:array connections:object lost_events:number \
         resyncs:number output_dropped:number total:number"
    );
    let netns = NetnsRecord {
        kind: "netns",
        event: "new",
        time: "t",
        host: "h",
        netns: 1,
        namespace: "container",
        owner: &owner,
    };
    assert_eq!(
        shape(&netns),
        "type:string event:string time:string host:string netns:number namespace:string \
         owner:object"
    );
}

#[test]
fn new_listener_alert() {
    let alert = super::alert::ListenerAlert {
        head: head(crate::model::alert::Kind::NewListener),
        addr: "::1".parse().unwrap(),
        port: 7001,
        ip_version: 6,
        pid: Some(42),
        comm: Some("nc".into()),
        uid: 0,
        since: "t".into(),
    };
    assert_eq!(
        shape(&alert),
        "type:string alert:string status:string time:string host:string netns:number \
         addr:string port:number ip_version:number pid:number comm:string uid:number since:string"
    );
}

fn head(alert: crate::model::alert::Kind) -> super::alert::AlertHead {
    super::alert::AlertHead {
        kind: "alert",
        alert,
        status: "warning",
        time: "t".into(),
        host: "h".into(),
        netns: 1,
        owner: None,
    }
}

#[test]
fn conn_spike_and_syn_flood_alerts() {
    use super::alert::{Levels, Peer, SpikeAlert, SynFloodAlert, SynFloodThresholds};
    let peer = Peer {
        addr: "127.0.0.2".parse().unwrap(),
        sockets: 3,
    };
    let spike = SpikeAlert {
        head: head(crate::model::alert::Kind::ConnSpike),
        direction: "outbound",
        addr: Some("10.0.0.1".parse().unwrap()),
        port: 443,
        rate: 100.0,
        baseline: 9.5,
        thresholds: Levels {
            warning: 47.5,
            critical: 95.0,
            clear: 19.0,
        },
        top_remote: vec![peer.clone()],
        since: "t".into(),
    };
    assert_eq!(
        shape(&spike),
        "type:string alert:string status:string time:string host:string netns:number \
         direction:string addr:string port:number rate:number baseline:number \
         thresholds:object top_remote:array since:string"
    );
    assert_eq!(
        shape(&serde_json::to_value(&spike).unwrap()["top_remote"][0]),
        "addr:string sockets:number"
    );
    let flood = SynFloodAlert {
        head: head(crate::model::alert::Kind::SynFlood),
        addr: "127.0.0.1".parse().unwrap(),
        port: 80,
        syn_recv: 60,
        synack_retrans_per_s: 0.0,
        drops_per_s: 0.0,
        thresholds: SynFloodThresholds {
            syn_recv: 50.0,
            synack_retrans_per_s: 100.0,
            drops_per_s: 10.0,
            critical: 4.0,
            clear: 0.5,
            baseline: 3.0,
        },
        baseline: super::alert::FloodFigures {
            syn_recv: 1.0,
            synack_retrans_per_s: 0.0,
            drops_per_s: 0.0,
        },
        top_sources: vec![peer],
        since: "t".into(),
    };
    assert_eq!(
        shape(&flood),
        "type:string alert:string status:string time:string host:string netns:number \
         addr:string port:number syn_recv:number synack_retrans_per_s:number \
         drops_per_s:number thresholds:object baseline:object top_sources:array since:string"
    );
}

#[test]
fn ephemeral_ports_and_port_exhaustion() {
    use super::alert::{ExhaustionAlert, Levels};
    use super::figures::{DestinationFigures, EphemeralFigures, OtherDestinations};
    let dest = DestinationFigures {
        laddr: "10.0.0.1".parse().unwrap(),
        raddr: "10.0.0.2".parse().unwrap(),
        rport: 443,
        in_use: 180,
        time_wait: 20,
        utilization: 0.9,
    };
    let figures = EphemeralFigures {
        range: [40000, 40199],
        size: 200,
        top: vec![dest.clone()],
        others: OtherDestinations::default(),
        untracked: Some(0),
    };
    assert_eq!(
        shape(&figures),
        "range:array size:number top:array others:object untracked:number"
    );
    let v = serde_json::to_value(&figures).unwrap();
    assert_eq!(
        shape(&v["top"][0]),
        "laddr:string raddr:string rport:number in_use:number time_wait:number utilization:number"
    );
    assert_eq!(shape(&v["others"]), "destinations:number in_use:number");
    let counts = Counts::default();
    let record = CountsRecord {
        listeners: Some(&[]),
        ephemeral_ports: Some(&figures),
        ..daemon_record(&counts)
    };
    assert!(
        shape(&record.at("t")).contains(" listeners:array ephemeral_ports:object lost_events:"),
        "{}",
        shape(&record.at("t"))
    );
    let alert = ExhaustionAlert {
        head: head(crate::model::alert::Kind::PortExhaustion),
        laddr: dest.laddr,
        raddr: dest.raddr,
        rport: 443,
        in_use: 180,
        time_wait: 20,
        size: 200,
        utilization: 0.9,
        thresholds: Levels {
            warning: 80.0,
            critical: 95.0,
            clear: 75.0,
        },
        since: "t".into(),
    };
    assert_eq!(
        shape(&alert),
        "type:string alert:string status:string time:string host:string netns:number \
         laddr:string raddr:string rport:number in_use:number time_wait:number size:number \
         utilization:number thresholds:object since:string"
    );
}
