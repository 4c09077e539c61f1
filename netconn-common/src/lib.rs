//! Types shared by the eBPF programs and the userspace daemon.
//!
//! Every struct here is a wire format between kernel and userspace:
//! `#[repr(C)]`, explicit padding, and a compile-time size check, so both
//! sides agree byte for byte. Map, program and global names are constants so
//! that a typo is a compile error instead of a load failure.
// The kernel side has no std; the userspace side (`user`) has, for the
// conversions that sit beside each wire type.
#![cfg_attr(not(feature = "user"), no_std)]

//! One module per feature; everything is also at the crate root.

pub mod conns;
pub mod counting;
pub mod ephemeral;
pub mod kernel;
pub mod metrics;
pub mod offsets;
pub mod udp;

pub use conns::*;
pub use counting::*;
pub use ephemeral::*;
pub use kernel::*;
pub use metrics::*;
pub use offsets::*;
pub use udp::*;

/// True in a build made with `NETCONN_EBPF_EMPTY=1`: every program returns
/// before doing anything, so what is left is the cost of the hooks netconn
/// attaches, the floor under any design on them (`cargo xtask bench
/// --kernel` builds one apart, in `target/emptied`). Such a build counts
/// nothing, and netconn says so when it loads.
pub const EMPTIED: bool = match option_env!("NETCONN_EBPF_EMPTY") {
    Some(v) => matches!(v.as_bytes(), [b'1']),
    None => false,
};

#[cfg(feature = "user")]
mod user {
    use super::*;
    // SAFETY: all of these are repr(C) with explicit padding and only
    // integer fields, so every bit pattern is valid.
    unsafe impl aya::Pod for Transitions {}
    unsafe impl aya::Pod for Control {}
    unsafe impl aya::Pod for Offsets {}
    unsafe impl aya::Pod for StateEvent {}
    unsafe impl aya::Pod for ConnEvent {}
    unsafe impl aya::Pod for TcpMetrics {}
    unsafe impl aya::Pod for MetricsKey {}
    unsafe impl aya::Pod for Owner {}
    unsafe impl aya::Pod for NsKey {}
    unsafe impl aya::Pod for NsCounts {}
    unsafe impl aya::Pod for Destination {}
    unsafe impl aya::Pod for DestinationKey {}
    unsafe impl aya::Pod for EphemeralControl {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_slots_are_distinct_and_in_range() {
        let mut seen = [false; TRANSITION_SLOTS];
        for f in 0..CONN_TYPES {
            for o in 0..STATES {
                for n in 0..STATES {
                    let s = transition_slot(f, o, n);
                    assert!(!seen[s], "slot {s} used twice");
                    seen[s] = true;
                }
            }
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn rtt_buckets_hold_their_values_in_order() {
        for v in 1..100_000u32 {
            assert!(rtt_bucket(v) >= rtt_bucket(v - 1), "{v} went back");
        }
        let big = (0..32).flat_map(|b| [(1u32 << b) - 1, 1 << b, (1 << b) + 1]);
        for v in (0..100_000u32).chain(big).chain([u32::MAX]) {
            let i = rtt_bucket(v);
            let (low, high) = rtt_bucket_bounds(i);
            assert!(low <= v && u64::from(v) < high, "{v} not in bucket {i}");
            if i >= 4 {
                assert!(
                    (high - u64::from(low)) * 4 <= u64::from(low),
                    "bucket {i} too wide"
                );
            }
        }
        assert_eq!(rtt_bucket(u32::MAX), 123);
        assert_eq!(rtt_bucket_bounds(123).1, 1 << 32);
        // Adjacent buckets meet.
        for i in 0..123 {
            assert_eq!(
                rtt_bucket_bounds(i).1,
                u64::from(rtt_bucket_bounds(i + 1).0)
            );
        }
    }

    #[test]
    fn rtt_sampling_takes_the_first_samples_and_a_fixed_share_of_any_stride_after() {
        for segs in 0..=RTT_FIRST_SEGMENTS {
            assert!(rtt_sampled(segs), "{segs}");
        }
        let one_in = 1u32 << RTT_SAMPLE_SHIFT;
        // A socket sampled at every stride-th count, over a long life:
        // the share taken stays near 1/one_in for every stride, and no run of
        // skipped samples is long.
        for stride in 1..=64u32 {
            let counts = (1..=200_000u32).map(|k| RTT_FIRST_SEGMENTS + k * stride);
            let (mut taken, mut gap, mut longest, mut n) = (0u32, 0u32, 0u32, 0u32);
            for c in counts {
                n += 1;
                if rtt_sampled(c) {
                    taken += 1;
                    gap = 0;
                } else {
                    gap += 1;
                    longest = longest.max(gap);
                }
            }
            let share = f64::from(taken) / f64::from(n);
            let expected = 1.0 / f64::from(one_in);
            assert!(
                (share - expected).abs() < expected * 0.15,
                "stride {stride}: {share}"
            );
            assert!(
                longest < 16 * one_in,
                "stride {stride}: {longest} skipped in a row"
            );
        }
    }

    #[test]
    fn a_connection_ends_from_established_or_later_only() {
        let ended = [
            TCP_ESTABLISHED,
            TCP_FIN_WAIT1,
            TCP_FIN_WAIT2,
            TCP_TIME_WAIT,
            TCP_CLOSE_WAIT,
            TCP_LAST_ACK,
            TCP_CLOSING,
        ];
        for s in 0..=TCP_NEW_SYN_RECV {
            assert_eq!(ended_connection(s), ended.contains(&s), "state {s}");
        }
    }

    #[test]
    fn failed_connects_by_the_errno_the_application_gets() {
        assert_eq!(failure_reason(111), FAILED_REFUSED);
        assert_eq!(failure_reason(110), FAILED_TIMEOUT);
        for unreachable in [113, 101, 112, 100, 13, 1, 71] {
            assert_eq!(
                failure_reason(unreachable),
                FAILED_UNREACHABLE,
                "{unreachable}"
            );
        }
        for aborted in [0, 104, 9999, -1] {
            assert_eq!(failure_reason(aborted), FAILED_ABORTED, "{aborted}");
        }
        assert_eq!(FAILURE_NAMES[FAILED_UNREACHABLE], "unreachable");
    }

    #[test]
    fn only_inet_tcp_and_udp_have_an_index() {
        assert_eq!(conn_index(AF_INET, IPPROTO_TCP), Some(0));
        assert_eq!(conn_index(AF_INET6, IPPROTO_TCP), Some(1));
        assert_eq!(conn_index(AF_INET, IPPROTO_UDP), Some(2));
        assert_eq!(conn_index(AF_INET6, IPPROTO_UDP), Some(3));
        assert_eq!(conn_index(1, IPPROTO_TCP), None);
        assert_eq!(conn_index(AF_INET, 136), None);
    }
}
