//! The interval alerts against figures made up for each case.

use super::*;

const STAMP: Stamp<'static> = Stamp {
    host: "h",
    netns: 1,
    time: "t",
    owner: None,
};

fn spikes() -> ConnSpikes {
    ConnSpikes::new(SpikeConfig {
        window: Duration::from_secs(20),
        warmup: Duration::from_secs(5),
        min_rate: 5.0,
        ..SpikeConfig::default()
    })
}

fn run(s: &mut ConnSpikes, rate: u64) -> Vec<SpikeAlert> {
    let counts = HashMap::from([(SpikeKey::Inbound(8080), rate)]);
    s.update(&counts, Duration::from_secs(1), &STAMP, |_| {
        top(HashMap::from([("127.0.0.2".parse().unwrap(), 3)]))
    })
}

#[test]
fn a_steady_rate_is_quiet_and_a_burst_alerts_then_clears() {
    let mut s = spikes();
    for _ in 0..60 {
        assert!(run(&mut s, 30).is_empty());
    }
    let raised = run(&mut s, 600);
    assert_eq!(raised.len(), 1);
    assert_eq!((raised[0].head.status, raised[0].port), ("critical", 8080));
    assert_eq!(raised[0].baseline, 30.0);
    assert_eq!(raised[0].top_remote[0].sockets, 3);
    // Held: no new record; the baseline does not learn the burst.
    assert!(run(&mut s, 600).is_empty());
    let cleared = run(&mut s, 30);
    assert_eq!(cleared[0].head.status, "clear");
    assert_eq!(cleared[0].since, "t");
    assert!(cleared[0].top_remote.is_empty());
}

#[test]
fn a_churn_that_starts_after_netconn_is_quiet_once_warm() {
    let mut s = spikes();
    // A first interval half covered, then the steady rate.
    assert!(run(&mut s, 15).is_empty());
    for _ in 0..120 {
        assert!(run(&mut s, 30).is_empty());
    }
}

#[test]
fn quiet_ports_and_warm_up_do_not_alert() {
    let mut s = spikes();
    // A port's first connections: during its warm-up, nothing.
    assert!(run(&mut s, 100).is_empty());
    let mut s = spikes();
    for _ in 0..10 {
        run(&mut s, 0);
    }
    // Below min_rate, even from nothing: nothing.
    assert!(run(&mut s, 4).is_empty());
    assert_eq!(run(&mut s, 7)[0].head.status, "warning");
}

fn listener(syn_backlog: u32, drops: u32) -> ListenerFigures {
    ListenerFigures {
        addr: "127.0.0.1".parse().unwrap(),
        port: 80,
        ip_version: 4,
        pid: None,
        comm: None,
        accept_queue: 0,
        backlog: 128,
        syn_backlog,
        accepted: None,
        handshakes_started: None,
        handshakes_failed: None,
        drops,
    }
}

#[test]
fn a_listener_that_grew_busy_is_no_flood() {
    let mut f = SynFloods::new(SynFloodConfig {
        syn_recv: 50.0,
        window: Duration::from_secs(20),
        ..SynFloodConfig::default()
    });
    let none = HashMap::new();
    let src = |_| HashMap::new();
    let tick = Duration::from_secs(1);
    // From 10 to 80 request sockets, slowly: past the absolute 50, but
    // never far from its learned normal.
    for n in (10..=80).chain(std::iter::repeat_n(80, 30)) {
        let raised = f.update(&[listener(n, 0)], &none, tick, &STAMP, src);
        assert!(raised.is_empty(), "{n}: {raised:?}");
    }
    assert!(
        f.update(&[listener(160, 0)], &none, tick, &STAMP, src)
            .is_empty()
    );
    // Well past three times its normal is a flood.
    let raised = f.update(&[listener(300, 0)], &none, tick, &STAMP, src);
    assert_eq!(raised[0].head.status, "warning");
    let learned = raised[0].baseline.syn_recv;
    assert!((75.0..=90.0).contains(&learned), "{learned}");
}

#[test]
fn syn_floods_by_any_figure_with_hysteresis() {
    let mut f = SynFloods::new(SynFloodConfig {
        syn_recv: 50.0,
        // The baseline frozen from the second interval on.
        window: Duration::from_secs(1),
        ..SynFloodConfig::default()
    });
    let none = HashMap::new();
    let src = |_| HashMap::from([("127.0.0.3".parse().unwrap(), 60)]);
    let tick = Duration::from_secs(1);
    assert!(
        f.update(&[listener(10, 0)], &none, tick, &STAMP, src)
            .is_empty()
    );
    let raised = f.update(&[listener(60, 0)], &none, tick, &STAMP, src);
    assert_eq!(raised[0].head.status, "warning");
    assert_eq!(raised[0].top_sources[0].addr.to_string(), "127.0.0.3");
    // Retransmitted SYN-ACKs alone can make it critical.
    let synack = HashMap::from([(80, 500)]);
    let up = f.update(&[listener(60, 0)], &synack, tick, &STAMP, src);
    assert_eq!(up[0].head.status, "critical");
    // Between clear and warning: held (as a warning).
    let down = f.update(&[listener(40, 0)], &none, tick, &STAMP, src);
    assert_eq!(down[0].head.status, "warning");
    assert!(
        f.update(&[listener(30, 0)], &none, tick, &STAMP, src)
            .is_empty()
    );
    let clear = f.update(&[listener(10, 0)], &none, tick, &STAMP, src);
    assert_eq!(clear[0].head.status, "clear");
}

#[test]
fn scans_count_distinct_ports_within_the_window() {
    let mut scans = PortScans::new(ScanConfig {
        ports: 5.0,
        window: Duration::from_secs(10),
        ..ScanConfig::default()
    });
    let start = std::time::Instant::now();
    let scanner: IpAddr = "10.0.0.9".parse().unwrap();
    let client: IpAddr = "10.0.0.8".parse().unwrap();
    // The same port again and again is one port.
    let same: Vec<(IpAddr, u16)> = (0..50).map(|_| (client, 80)).collect();
    assert!(scans.update(&same, start, &STAMP).is_empty());
    let many: Vec<(IpAddr, u16)> = (1..=6).map(|p| (scanner, p)).collect();
    let raised = scans.update(&many, start, &STAMP);
    assert_eq!(raised.len(), 1);
    assert_eq!((raised[0].addr, raised[0].ports), (scanner, 6));
    assert_eq!(raised[0].sample, vec![1, 2, 3, 4, 5, 6]);
    // Past the window the ports age out: clear.
    let later = start + Duration::from_secs(11);
    let cleared = scans.update(&[], later, &STAMP);
    assert_eq!(cleared[0].head.status, "clear");
    assert_eq!(scans.pairs, 0);
}

#[test]
fn port_exhaustion_has_the_conntrack_hysteresis_and_clears_when_gone() {
    use crate::live::ephemeral::EphemeralReading;
    use crate::tables::port_range::PortRange;
    let range = PortRange {
        low: 1000,
        high: 1199,
        size: 200,
    };
    let at = |in_use: u64| {
        let d = crate::output::figures::DestinationFigures {
            laddr: "10.0.0.1".parse().unwrap(),
            raddr: "10.0.0.2".parse().unwrap(),
            rport: 80,
            in_use,
            time_wait: 0,
            utilization: in_use as f64 / 200.0,
        };
        EphemeralReading::new(range, vec![d], None)
    };
    let mut p = PortExhaustion::new(ExhaustionConfig::default());
    let mut statuses = Vec::new();
    for in_use in [150, 160, 180, 192, 170, 151, 149] {
        let out = p.update(&at(in_use), &STAMP);
        statuses.push(out.first().map(|a| a.head.status));
    }
    assert_eq!(
        statuses,
        [
            None,
            Some("warning"),
            None,
            Some("critical"),
            Some("warning"),
            None,
            Some("clear")
        ]
    );
    // Raised, then every socket gone: cleared at 0.
    p.update(&at(190), &STAMP);
    let out = p.update(&EphemeralReading::new(range, Vec::new(), None), &STAMP);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].head.status, out[0].in_use), ("clear", 0));
    assert!(p.raised.is_empty());
}
