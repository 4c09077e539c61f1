//! Monitoring-plugin conventions: threshold ranges, states and exit codes,
//! as the Monitoring Plugins Development Guidelines define them.
//!
//! A range `start:end` is what is *fine*; a value outside it alerts:
//!
//! | range   | alerts when          |
//! | ------- | -------------------- |
//! | `10`    | < 0 or > 10          |
//! | `10:`   | < 10                 |
//! | `~:10`  | > 10                 |
//! | `10:20` | < 10 or > 20         |
//! | `@10:20`| >= 10 and <= 20      |

use std::fmt;
use std::str::FromStr;

/// Plugin states, ordered by severity for the purpose of "the worst".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Warning,
    Critical,
    Unknown,
}

impl Status {
    pub fn exit_code(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Warning => 1,
            Status::Critical => 2,
            Status::Unknown => 3,
        }
    }

    /// Severity for combining pair states: CRITICAL beats WARNING beats OK.
    fn rank(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Warning => 1,
            Status::Unknown => 2,
            Status::Critical => 3,
        }
    }

    pub fn worst(self, other: Status) -> Status {
        if other.rank() > self.rank() {
            other
        } else {
            self
        }
    }

    /// ` [WARNING]` after a value outside its range, nothing when OK.
    pub fn suffix(self) -> &'static str {
        match self {
            Status::Ok => "",
            Status::Warning => " [WARNING]",
            Status::Critical => " [CRITICAL]",
            Status::Unknown => " [UNKNOWN]",
        }
    }
}

/// A threshold range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    start: f64,
    end: f64,
    /// `@`: alert inside instead of outside.
    inside: bool,
}

impl Range {
    /// Whether `value` should raise an alert.
    pub fn alerts(&self, value: f64) -> bool {
        let within = self.start <= value && value <= self.end;
        within == self.inside
    }
}

fn number(s: &str, whole: &str) -> Result<f64, String> {
    let n: f64 = s
        .parse()
        .map_err(|_| format!("bad range {whole:?}: {s:?} is not a number"))?;
    if n.is_finite() {
        Ok(n)
    } else {
        Err(format!("bad range {whole:?}: {s:?} is not a finite number"))
    }
}

impl FromStr for Range {
    type Err = String;

    fn from_str(whole: &str) -> Result<Range, String> {
        let s = whole.trim();
        let (inside, s) = match s.strip_prefix('@') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        if s.is_empty() {
            return Err(format!("bad range {whole:?}: empty"));
        }
        let (start, end) = match s.split_once(':') {
            None => (0.0, number(s, whole)?),
            Some((start, end)) => {
                let start = match start {
                    "~" => f64::NEG_INFINITY,
                    "" => 0.0,
                    s => number(s, whole)?,
                };
                let end = match end {
                    "" => f64::INFINITY,
                    e => number(e, whole)?,
                };
                (start, end)
            }
        };
        if start > end {
            return Err(format!(
                "bad range {whole:?}: the start is greater than the end"
            ));
        }
        Ok(Range { start, end, inside })
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.inside {
            f.write_str("@")?;
        }
        if self.start == f64::NEG_INFINITY {
            f.write_str("~")?;
        } else {
            write!(f, "{}", self.start)?;
        }
        f.write_str(":")?;
        if self.end.is_finite() {
            write!(f, "{}", self.end)?;
        }
        Ok(())
    }
}

/// The state of one value against optional warning and critical ranges.
pub fn evaluate(value: f64, warning: Option<&Range>, critical: Option<&Range>) -> Status {
    if critical.is_some_and(|r| r.alerts(value)) {
        Status::Critical
    } else if warning.is_some_and(|r| r.alerts(value)) {
        Status::Warning
    } else {
        Status::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Range {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    /// (range, values that alert, values that do not).
    const CASES: &[(&str, &[f64], &[f64])] = &[
        ("10", &[-1.0, 10.5, 11.0], &[0.0, 5.0, 10.0]),
        ("10:", &[-5.0, 0.0, 9.0], &[10.0, 11.0, 1e9]),
        ("~:10", &[10.1, 11.0], &[-1e9, 0.0, 10.0]),
        ("10:20", &[9.0, 21.0, 0.0], &[10.0, 15.0, 20.0]),
        ("@10:20", &[10.0, 15.0, 20.0], &[9.0, 21.0]),
        ("@10", &[0.0, 10.0], &[-1.0, 11.0]),
        ("0", &[1.0, -1.0], &[0.0]),
        (":5", &[6.0, -1.0], &[0.0, 5.0]),
        ("-5:-1", &[0.0, -6.0], &[-5.0, -1.0]),
        ("1.5:2.5", &[1.4, 2.6], &[1.5, 2.0, 2.5]),
        ("@~:0", &[-3.0, 0.0], &[0.5]),
        (" 10 ", &[11.0], &[10.0]),
    ];

    #[test]
    fn ranges_follow_the_guidelines() {
        for (range, alert, fine) in CASES {
            let parsed = r(range);
            for v in *alert {
                assert!(parsed.alerts(*v), "{range} should alert on {v}");
            }
            for v in *fine {
                assert!(!parsed.alerts(*v), "{range} should not alert on {v}");
            }
        }
    }

    #[test]
    fn bad_ranges_are_refused_with_a_reason() {
        for bad in [
            "", "@", "abc", "10:5", "1:2:3", "~", "10:x", "x:10", "nan", "inf", "@:~",
        ] {
            let err = bad.parse::<Range>().expect_err(bad);
            assert!(err.contains("bad range"), "{bad}: {err}");
        }
    }

    #[test]
    fn display_round_trips() {
        for (range, ..) in CASES {
            let parsed = r(range);
            assert_eq!(r(&parsed.to_string()), parsed, "{range}");
        }
    }

    #[test]
    fn critical_wins_over_warning() {
        let (w, c) = (r("10"), r("20"));
        assert_eq!(evaluate(5.0, Some(&w), Some(&c)), Status::Ok);
        assert_eq!(evaluate(15.0, Some(&w), Some(&c)), Status::Warning);
        assert_eq!(evaluate(25.0, Some(&w), Some(&c)), Status::Critical);
        assert_eq!(evaluate(25.0, None, None), Status::Ok);
        assert_eq!(Status::Warning.worst(Status::Critical), Status::Critical);
        assert_eq!(Status::Critical.worst(Status::Warning), Status::Critical);
        assert_eq!(Status::Ok.worst(Status::Warning), Status::Warning);
    }
}
