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
            Self::Ok => 0,
            Self::Warning => 1,
            Self::Critical => 2,
            Self::Unknown => 3,
        }
    }

    /// Severity for combining pair states: CRITICAL beats WARNING beats OK.
    fn rank(self) -> u8 {
        match self {
            Self::Ok => 0,
            Self::Warning => 1,
            Self::Unknown => 2,
            Self::Critical => 3,
        }
    }

    pub fn worst(self, other: Self) -> Self {
        if other.rank() > self.rank() {
            other
        } else {
            self
        }
    }

    /// ` [WARNING]` after a value outside its range, nothing when OK.
    pub fn suffix(self) -> &'static str {
        match self {
            Self::Ok => "",
            Self::Warning => " [WARNING]",
            Self::Critical => " [CRITICAL]",
            Self::Unknown => " [UNKNOWN]",
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

/// One bound: the plugin library's grammar (`[+-]digits[.digits][e[+-]n]`,
/// an optional trailing `%`, which is dropped); empty: `default`.
fn bound(atom: &str, default: f64) -> Result<f64, ()> {
    let atom = atom.trim();
    if atom.is_empty() {
        return Ok(default);
    }
    let number = atom.strip_suffix('%').unwrap_or(atom);
    let unsigned = number.strip_prefix(['+', '-']).unwrap_or(number);
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e)),
        None => (unsigned, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        None => digits(mantissa),
        Some((int, frac)) => {
            (digits(int) && frac.bytes().all(|b| b.is_ascii_digit()))
                || (int.is_empty() && digits(frac))
        }
    };
    let exponent_ok = exponent.is_none_or(|e| digits(e.strip_prefix(['+', '-']).unwrap_or(e)));
    if !(mantissa_ok && exponent_ok) {
        return Err(());
    }
    number.parse().map_err(|_| ())
}

/// A number as Python's `{:g}` writes it (in the plugin's messages).
fn g(n: f64) -> String {
    if n.is_infinite() {
        return if n > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let text = format!("{n}");
    text.strip_suffix(".0").map_or(text.clone(), str::to_owned)
}

/// A threshold as the Linuxfabrik plugins read `-w`/`-c`: leading
/// backslashes dropped (Icinga's escape for a leading dash), `none` (any
/// case) for no threshold, else a [`Range`].
pub fn threshold(spec: &str) -> Result<Option<Range>, String> {
    let spec = spec.trim_start_matches('\\');
    if spec.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    spec.parse().map(Some)
}

impl FromStr for Range {
    type Err = String;

    /// The Linuxfabrik library's grammar, with its messages: `10`, `10:`,
    /// `:`, `~:10`, `10:20`, `@...` (an empty spec or a lone `@` is
    /// 0 to infinity), `%` after a bound ignored.
    fn from_str(spec: &str) -> Result<Self, String> {
        let (inside, s) = match spec.strip_prefix('@') {
            Some(rest) => (true, rest),
            None => (false, spec),
        };
        let (start, end) = if s.contains(':') {
            match s.split(':').collect::<Vec<_>>().as_slice() {
                [start, end] => (*start, *end),
                _ => return Err("Not using range definition correctly".into()),
            }
        } else {
            ("", s)
        };
        let incorrect = |_| "Range format incorrect".to_string();
        let start = if start.trim() == "~" {
            f64::NEG_INFINITY
        } else {
            bound(start, 0.0).map_err(incorrect)?
        };
        let end = bound(end, f64::INFINITY).map_err(incorrect)?;
        if start > end {
            return Err(format!(
                "Start {} must not be greater than end {}",
                g(start),
                g(end)
            ));
        }
        Ok(Self { start, end, inside })
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
    fn bad_ranges_are_refused_with_the_plugins_reasons() {
        for bad in [
            "abc", "~", "10:x", "x:10", "nan", "inf", "@:~", "1,5", "0x10", "1_000",
        ] {
            let err = bad.parse::<Range>().expect_err(bad);
            assert_eq!(err, "Range format incorrect", "{bad}");
        }
        assert_eq!(
            "1:2:3".parse::<Range>().unwrap_err(),
            "Not using range definition correctly"
        );
        assert_eq!(
            "10:5".parse::<Range>().unwrap_err(),
            "Start 10 must not be greater than end 5"
        );
        assert_eq!(
            "-10".parse::<Range>().unwrap_err(),
            "Start 0 must not be greater than end -10"
        );
    }

    #[test]
    fn the_plugins_extra_forms() {
        // A lone @ (or an empty spec): 0 to infinity, inverted or not.
        assert!(r("@").alerts(0.0) && r("@").alerts(1e9) && !r("@").alerts(-1.0));
        assert!(!r("").alerts(5.0) && r("").alerts(-1.0));
        assert!(!r(":").alerts(5.0));
        // A percent sign repeats the unit: ignored.
        assert_eq!(r("90%:"), r("90:"));
        assert_eq!(r("1:12%"), r("1:12"));
        assert_eq!(r("1e3"), r("1000"));
        assert_eq!(r(".5:"), r("0.5:"));
        assert_eq!(threshold("none"), Ok(None));
        assert_eq!(threshold("NONE"), Ok(None));
        assert_eq!(threshold("\\-5:5"), Ok(Some(r("-5:5"))));
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
