//! The hysteresis every alert shares (as Netdata's conntrack alarm has
//! it): raised at `warn` or `crit`, kept as a warning until the value falls
//! below `clear`.

use crate::config::Thresholds;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Clear,
    Warning,
    Critical,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Self::Clear => "clear",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

/// The alert state machine; `update` returns the new level when it changed.
#[derive(Debug, Clone, Copy)]
pub struct Hysteresis {
    pub thresholds: Thresholds,
    pub level: Level,
}

impl Hysteresis {
    pub fn new(thresholds: Thresholds) -> Self {
        Self {
            thresholds,
            level: Level::Clear,
        }
    }

    pub fn update(&mut self, utilization: f64) -> Option<Level> {
        let t = self.thresholds;
        let next = if utilization >= t.crit {
            Level::Critical
        } else if utilization >= t.warn {
            // Down from critical to warning, or up to warning.
            Level::Warning
        } else if self.level != Level::Clear && utilization >= t.clear {
            // Between clear and warn: keep an alert raised (hysteresis),
            // as warning at most.
            Level::Warning
        } else {
            Level::Clear
        };
        (next != self.level).then(|| {
            self.level = next;
            next
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_hysteresis_like_netdata() {
        let mut a = Hysteresis::new(Thresholds::default());
        let steps = [
            (50.0, None),
            (89.9, None),
            (90.0, Some(Level::Warning)),
            (87.0, None), // stays raised above 85
            (95.0, Some(Level::Critical)),
            (92.0, Some(Level::Warning)),
            (86.0, None),
            (84.9, Some(Level::Clear)),
            (88.0, None), // below warn: stays clear
            (96.0, Some(Level::Critical)),
            (10.0, Some(Level::Clear)),
        ];
        for (u, want) in steps {
            assert_eq!(a.update(u), want, "at {u}%");
        }
    }
}
