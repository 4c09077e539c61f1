//! The calling thread's namespace's ephemeral port range: what
//! `connect()` picks local ports from (`ip_local_port_range`), minus the
//! ports it must leave alone (`ip_local_reserved_ports`).

use std::io;

const RANGE: &str = "/proc/sys/net/ipv4/ip_local_port_range";
const RESERVED: &str = "/proc/sys/net/ipv4/ip_local_reserved_ports";

/// The range and how many ports of it `connect()` may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub low: u16,
    pub high: u16,
    /// Ports in `low..=high` that are not reserved.
    pub size: u32,
}

impl PortRange {
    pub fn read() -> io::Result<Self> {
        let range = std::fs::read_to_string(RANGE)?;
        // Absent on kernels without the sysctl: nothing reserved.
        let reserved = std::fs::read_to_string(RESERVED).unwrap_or_default();
        parse(&range, &reserved).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, format!("{RANGE}: {range:?}"))
        })
    }

    pub fn contains(&self, port: u16) -> bool {
        (self.low..=self.high).contains(&port)
    }
}

/// `"32768\t60999\n"` and `"8080,9000-9010\n"`.
fn parse(range: &str, reserved: &str) -> Option<PortRange> {
    let mut words = range.split_whitespace().map(str::parse::<u16>);
    let (low, high) = (words.next()?.ok()?, words.next()?.ok()?);
    if low > high {
        return None;
    }
    let mut taken = 0u32;
    let mut seen = vec![false; usize::from(high - low) + 1];
    for part in reserved.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<u16>().ok()?, b.parse::<u16>().ok()?),
            None => {
                let p = part.parse::<u16>().ok()?;
                (p, p)
            }
        };
        for p in a.max(low)..=b.min(high) {
            let slot = &mut seen[usize::from(p - low)];
            if !*slot {
                *slot = true;
                taken += 1;
            }
        }
    }
    Some(PortRange {
        low,
        high,
        size: u32::from(high - low) + 1 - taken,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_is_the_range_minus_reserved_ports_inside_it() {
        let r = parse("32768\t60999\n", "\n").unwrap();
        assert_eq!((r.low, r.high, r.size), (32768, 60999, 28232));
        let r = parse("1000 1199", "80,1000-1009,1100,1100,1195-2000").unwrap();
        assert_eq!(r.size, 200 - 10 - 1 - 5);
        assert!(r.contains(1000) && r.contains(1199) && !r.contains(1200));
        assert_eq!(parse("9 8", ""), None);
        assert_eq!(parse("1 x", ""), None);
        assert_eq!(parse("1 2", "a-b"), None);
    }
}
