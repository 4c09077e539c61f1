//! The check's command line, read the way the Linuxfabrik
//! `network-connections` plugin reads its own (Python's argparse with
//! `parse_known_args`): unknown options and stray words are ignored, the
//! last value of an option wins (the conn-type and status lists add up),
//! long options may be abbreviated to any unique prefix, values come as
//! `--warning 5`, `--warning=5` or `-w5`, and a value may be negative
//! (`-w -5`). An Icinga command definition written for the plugin runs
//! unchanged.

/// What the command line asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Invocation {
    /// Lower-case conn-types (`tcp`...) or `all`; empty: `all`.
    pub conn_types: Vec<String>,
    /// Lower-case states (`established`, `none`...) or `all`; empty: `all`.
    pub conn_status: Vec<String>,
    /// The ranges as written (parsed by [`crate::plugin::nagios`]).
    pub warning: Option<String>,
    pub critical: Option<String>,
    pub always_ok: bool,
    pub no_perfdata: bool,
    pub version: bool,
    pub help: bool,
    /// `--netns`: netconn's own option, also accepted after `check`.
    pub netns: Option<String>,
    /// `--alerts` (netconn's own): the running watch's active alerts
    /// instead of the counts.
    pub alerts: bool,
    /// What was ignored, for `--help`'s sake and the tests.
    pub ignored: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opt {
    Alerts,
    AlwaysOk,
    ConnStatus,
    ConnType,
    Critical,
    Help,
    Netns,
    NoPerfdata,
    /// The plugin's fixture option: its value is taken and ignored.
    Test,
    Version,
    Warning,
}

impl Opt {
    fn takes_value(self) -> bool {
        matches!(
            self,
            Self::ConnStatus
                | Self::ConnType
                | Self::Critical
                | Self::Netns
                | Self::Test
                | Self::Warning
        )
    }
}

/// The long options, as argparse matches abbreviations against them.
const LONG: [(&str, Opt); 11] = [
    ("--alerts", Opt::Alerts),
    ("--always-ok", Opt::AlwaysOk),
    ("--conn-status", Opt::ConnStatus),
    ("--conn-type", Opt::ConnType),
    ("--critical", Opt::Critical),
    ("--help", Opt::Help),
    ("--netns", Opt::Netns),
    ("--no-perfdata", Opt::NoPerfdata),
    ("--test", Opt::Test),
    ("--version", Opt::Version),
    ("--warning", Opt::Warning),
];

const SHORT: [(char, Opt); 4] = [
    ('c', Opt::Critical),
    ('h', Opt::Help),
    ('V', Opt::Version),
    ('w', Opt::Warning),
];

/// The option's name as argparse names it in errors.
fn name(opt: Opt) -> &'static str {
    match opt {
        Opt::Critical => "-c/--critical",
        Opt::Warning => "-w/--warning",
        Opt::Help => "-h/--help",
        Opt::Version => "-V/--version",
        other => LONG
            .iter()
            .find(|(_, o)| *o == other)
            .map_or("", |(n, _)| n),
    }
}

/// Whether argparse would read `token` as a negative number
/// (`^-\d+$|^-\d*\.\d+$`; the parser has no option that looks like one,
/// so such a token is a value).
fn negative_number(token: &str) -> bool {
    let Some(digits) = token.strip_prefix('-') else {
        return false;
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    all_digits(digits)
        || digits
            .split_once('.')
            .is_some_and(|(int, frac)| int.bytes().all(|b| b.is_ascii_digit()) && all_digits(frac))
}

/// Whether `token` is an option (not a value) for argparse: a leading
/// dash, not a negative number, no space.
fn looks_like_option(token: &str) -> bool {
    token.starts_with('-') && token.len() > 1 && !negative_number(token) && !token.contains(' ')
}

/// A long option by exact name or unique prefix; `Ok(None)`: unknown.
fn long(flag: &str) -> Result<Option<Opt>, String> {
    if let Some((_, o)) = LONG.iter().find(|(n, _)| *n == flag) {
        return Ok(Some(*o));
    }
    let matches: Vec<&(&str, Opt)> = LONG.iter().filter(|(n, _)| n.starts_with(flag)).collect();
    match matches.as_slice() {
        [] => Ok(None),
        [(_, o)] => Ok(Some(*o)),
        many => Err(format!(
            "ambiguous option: {flag} could match {}",
            many.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
        )),
    }
}

/// Reads the arguments after `check`.
pub fn parse(args: &[String]) -> Result<Invocation, String> {
    let mut out = Invocation::default();
    let mut i = 0;
    while i < args.len() {
        let token = &args[i];
        i += 1;
        if token == "--" {
            out.ignored.extend(args[i..].iter().cloned());
            break;
        }
        if !looks_like_option(token) {
            out.ignored.push(token.clone());
            continue;
        }
        let (opt, inline) = if let Some(rest) = token.strip_prefix("--") {
            let (flag, inline) = match rest.split_once('=') {
                Some((f, v)) => (format!("--{f}"), Some(v.to_owned())),
                None => (token.clone(), None),
            };
            match long(&flag)? {
                Some(o) => (o, inline),
                None => {
                    out.ignored.push(token.clone());
                    continue;
                }
            }
        } else {
            let mut chars = token[1..].chars();
            let letter = chars.next().expect("an option has a letter");
            let rest: String = chars.collect();
            match SHORT.iter().find(|(c, _)| *c == letter) {
                Some((_, o)) if o.takes_value() => (*o, (!rest.is_empty()).then_some(rest)),
                // A flag with letters after it: argparse reads them as
                // more single-letter flags; the plugin has only -V and -h.
                Some((_, o)) if rest.is_empty() || rest.chars().all(|c| "Vh".contains(c)) => {
                    if rest.contains('h') {
                        out.help = true;
                    }
                    if rest.contains('V') {
                        out.version = true;
                    }
                    (*o, None)
                }
                Some((_, o)) => {
                    return Err(format!(
                        "argument {}: ignored explicit argument '{rest}'",
                        name(*o)
                    ));
                }
                None => {
                    out.ignored.push(token.clone());
                    continue;
                }
            }
        };
        let value = if opt.takes_value() {
            match inline {
                Some(v) => Some(v),
                None if i < args.len() && !looks_like_option(&args[i]) && args[i] != "--" => {
                    i += 1;
                    Some(args[i - 1].clone())
                }
                None => return Err(format!("argument {}: expected one argument", name(opt))),
            }
        } else if inline.is_some() {
            return Err(format!("argument {}: ignored explicit argument", name(opt)));
        } else {
            None
        };
        match (opt, value) {
            (Opt::AlwaysOk, _) => out.always_ok = true,
            (Opt::Alerts, _) => out.alerts = true,
            (Opt::NoPerfdata, _) => out.no_perfdata = true,
            (Opt::Version, _) => out.version = true,
            (Opt::Help, _) => out.help = true,
            (Opt::Warning, v) => out.warning = v,
            (Opt::Critical, v) => out.critical = v,
            (Opt::Netns, v) => out.netns = v,
            (Opt::Test, _) => {}
            (Opt::ConnStatus, Some(v)) => {
                out.conn_status
                    .extend(choices(&v, &crate::plugin::check::CONN_STATUS, opt)?);
            }
            (Opt::ConnType, Some(v)) => {
                out.conn_types
                    .extend(choices(&v, &crate::plugin::check::CONN_TYPES, opt)?);
            }
            (Opt::ConnStatus | Opt::ConnType, None) => unreachable!("takes a value"),
        }
    }
    Ok(out)
}

/// The values of a list option: one of `allowed`, or (netconn's own
/// extension) several separated by commas.
fn choices(value: &str, allowed: &[&str], opt: Opt) -> Result<Vec<String>, String> {
    value
        .split(',')
        .map(|v| {
            if allowed.contains(&v) {
                Ok(v.to_owned())
            } else {
                Err(format!(
                    "argument {}: invalid choice: '{v}' (choose from {})",
                    name(opt),
                    allowed.join(", ")
                ))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Invocation, String> {
        parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn the_icinga_director_command_runs_as_written() {
        let i = p(&[
            "--always-ok",
            "--conn-status",
            "established",
            "--conn-status",
            "listen",
            "--conn-type",
            "tcp",
            "--critical",
            "1000",
            "--no-perfdata",
            "--warning",
            "500",
        ])
        .unwrap();
        assert!(i.always_ok && i.no_perfdata);
        assert_eq!(i.conn_status, ["established", "listen"]);
        assert_eq!(i.conn_types, ["tcp"]);
        assert_eq!(
            (i.warning.as_deref(), i.critical.as_deref()),
            (Some("500"), Some("1000"))
        );
    }

    #[test]
    fn unknown_options_and_words_are_ignored_and_the_last_value_wins() {
        let i = p(&[
            "--bogus",
            "-x",
            "word",
            "-w",
            "5",
            "-w",
            "100",
            "--timeout=3",
        ])
        .unwrap();
        assert_eq!(i.warning.as_deref(), Some("100"));
        assert_eq!(i.ignored, ["--bogus", "-x", "word", "--timeout=3"]);
    }

    #[test]
    fn values_attached_abbreviated_and_negative() {
        let i = p(&["-w5", "--crit=@10:20", "--conn-t", "udp", "--no-p"]).unwrap();
        assert_eq!(i.warning.as_deref(), Some("5"));
        assert_eq!(i.critical.as_deref(), Some("@10:20"));
        assert_eq!(i.conn_types, ["udp"]);
        assert!(i.no_perfdata);
        assert_eq!(p(&["-w", "-5"]).unwrap().warning.as_deref(), Some("-5"));
        assert_eq!(p(&["-w", "-.5"]).unwrap().warning.as_deref(), Some("-.5"));
        // argparse takes `-5:-1` for an option: it must be attached.
        assert!(p(&["-w", "-5:-1"]).is_err());
        assert_eq!(
            p(&["--warning=-5:-1"]).unwrap().warning.as_deref(),
            Some("-5:-1")
        );
        assert!(p(&["-V"]).unwrap().version);
        assert!(p(&["--vers"]).unwrap().version);
        assert_eq!(
            p(&["--test", "fixture,0,0", "-c", "none"])
                .unwrap()
                .critical
                .as_deref(),
            Some("none")
        );
    }

    #[test]
    fn errors_say_what_argparse_says() {
        assert_eq!(
            p(&["-w"]).unwrap_err(),
            "argument -w/--warning: expected one argument"
        );
        assert_eq!(
            p(&["--warning", "--critical", "5"]).unwrap_err(),
            "argument -w/--warning: expected one argument"
        );
        assert_eq!(
            p(&["--conn"]).unwrap_err(),
            "ambiguous option: --conn could match --conn-status, --conn-type"
        );
        assert!(p(&["--conn-status", "bogus"]).unwrap_err().starts_with(
            "argument --conn-status: invalid choice: 'bogus' (choose from all, close,"
        ));
        assert_eq!(
            p(&["--conn-type", "tcp,udp6"]).unwrap().conn_types,
            ["tcp", "udp6"]
        );
    }
}
