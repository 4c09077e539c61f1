//! `netconn top`: a live view in the terminal, fed by the running watch's
//! records (or by its own dumps when none runs): the per-state table and
//! its changes, rates over the last minutes, TCP metrics, listeners and
//! alerts; the connections, sortable and filtered; with `-A` the
//! namespaces.

pub mod model;
pub mod source;
mod view;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use model::{AlertRow, Frame, History, Sort};
use source::Source;

/// How often the daemon is asked (it answers its last interval's records;
/// the screen changes when they do).
const ASK_EVERY: Duration = Duration::from_secs(1);
/// How often the connections view dumps the sockets again.
const DUMP_EVERY: Duration = Duration::from_secs(2);
/// How often a key is waited for between two looks at the clock.
const TICK: Duration = Duration::from_millis(200);

/// The connections view's columns: `list`'s up to `AGE(s)` (without the
/// namespace and owner), then the bytes acknowledged and received
/// (`tcp_info`).
static CONNECTION_HEADER: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
    let list = &crate::list::ROW_HEADER;
    let age = list
        .iter()
        .position(|h| *h == "AGE(s)")
        .expect("an AGE column");
    list[..=age]
        .iter()
        .copied()
        .chain(["SENT", "RECV"])
        .collect()
});

/// The views, in the order Tab goes through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Overview,
    Connections,
    Namespaces,
}

/// Everything the screen shows.
pub struct App {
    pub source: Source,
    pub host: String,
    /// top's own namespace.
    pub netns: u32,
    /// `-A`: every namespace (the Namespaces view).
    pub all: bool,
    pub view: View,
    pub frame: Option<Frame>,
    pub before: Option<Frame>,
    /// Each namespace's figures over time.
    pub histories: HashMap<u64, History>,
    pub alerts: Vec<AlertRow>,
    /// The namespace the overview shows.
    pub shown: u64,
    /// The connections view: its rows (cells), when dumped.
    pub connections: Vec<Vec<String>>,
    /// The namespace they are of.
    pub connections_of: u32,
    pub aggregated: bool,
    pub sort: Sort,
    pub filter: String,
    /// Typing a filter (after `/`).
    pub editing: bool,
    /// The row selected in a table view.
    pub selected: usize,
    /// What went wrong at the last refresh, if anything.
    pub problem: Option<String>,
    pub color: bool,
}

impl App {
    fn new(source: Source, netns: u32, all: bool) -> Self {
        Self {
            source,
            host: crate::host::hostname(),
            netns,
            all,
            view: if all {
                View::Namespaces
            } else {
                View::Overview
            },
            frame: None,
            before: None,
            histories: HashMap::new(),
            alerts: Vec::new(),
            shown: u64::from(netns),
            connections: Vec::new(),
            connections_of: netns,
            aggregated: false,
            sort: Sort {
                column: 0,
                descending: false,
            },
            filter: String::new(),
            editing: false,
            selected: 0,
            problem: None,
            // https://no-color.org: set and not empty.
            color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        }
    }

    /// Asks the source for its figures; a new interval becomes the frame.
    fn refresh(&mut self) {
        let fetched = match self.source.fetch(&self.host, self.netns) {
            Ok(f) => f,
            Err(e) => {
                self.problem = Some(e);
                return;
            }
        };
        self.problem = None;
        self.alerts = model::alert_rows(&fetched.alerts);
        let Some(frame) = Frame::parse(&fetched.records) else {
            return;
        };
        if self.frame.as_ref().and_then(Frame::time) == frame.time() {
            return;
        }
        for r in &frame.counts {
            if let Some(netns) = r["netns"].as_u64() {
                self.histories.entry(netns).or_default().push(r);
            }
        }
        self.histories
            .retain(|netns, _| frame.counts.iter().any(|r| r["netns"] == *netns));
        self.before = self.frame.replace(frame);
        self.selected = self.selected.min(self.rows_shown().saturating_sub(1));
    }

    /// Dumps the sockets of the namespace the overview shows again
    /// (connections view): top's own, or with `-A` the one opened from
    /// the namespaces view, from a thread inside it.
    fn dump_connections(&mut self) {
        let procs = crate::tables::procs::Processes::new(false);
        let netns = u32::try_from(self.shown).unwrap_or(self.netns);
        let rows = if netns == self.netns {
            crate::list::rows(&procs, netns)
                .map_err(|e| format!("cannot dump the socket tables: {e}"))
        } else {
            match crate::namespaces::discover::scan()
                .get(&netns)
                .and_then(|ns| ns.open())
            {
                None => Err(format!("namespace {netns} is gone")),
                Some(file) => {
                    crate::namespaces::target::run_in(&file, || crate::list::rows(&procs, netns))
                        .map_err(|e| format!("cannot enter namespace {netns}: {e}"))
                        .and_then(|r| r.map_err(|e| format!("cannot dump the socket tables: {e}")))
                }
            }
        };
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => {
                self.problem = Some(e);
                self.connections.clear();
                return;
            }
        };
        self.connections_of = netns;
        let list = crate::list::Namespaced {
            netns,
            owner: None,
            rows,
        };
        self.connections = if self.aggregated {
            crate::list::aggregate(&list.rows)
                .iter()
                .map(crate::list::group_cells)
                .collect()
        } else {
            list.rows
                .iter()
                .map(|r| {
                    let mut cells = crate::list::row_cells(r, &list, false);
                    // Without the NETNS column; with the bytes.
                    cells.pop();
                    let bytes =
                        |b: Option<u64>| b.map_or_else(|| "-".to_owned(), |b| b.to_string());
                    cells.push(bytes(r.info.map(|i| i.bytes_acked)));
                    cells.push(bytes(r.info.map(|i| i.bytes_received)));
                    cells
                })
                .collect()
        };
        for row in &mut self.connections {
            for cell in row.iter_mut() {
                *cell = crate::host::printable(cell).into_owned();
            }
        }
    }

    /// The columns of the connections view.
    pub fn connection_header(&self) -> &'static [&'static str] {
        if self.aggregated {
            &crate::list::GROUP_HEADER[..crate::list::GROUP_HEADER.len() - 1]
        } else {
            &CONNECTION_HEADER[..]
        }
    }

    /// The rows the current table view shows (namespaces, connections).
    fn rows_shown(&self) -> usize {
        match self.view {
            View::Overview => 0,
            View::Connections => {
                model::filtered_sorted(&self.connections, &self.filter, self.sort).len()
            }
            View::Namespaces => self.frame.as_ref().map_or(0, |f| f.counts.len()),
        }
    }

    /// Acts on a key; false: quit.
    fn key(&mut self, key: KeyEvent) -> bool {
        if key.kind == KeyEventKind::Release {
            return true;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && key.code == KeyCode::Char('c') {
            return false;
        }
        if self.editing {
            match key.code {
                KeyCode::Enter | KeyCode::Esc => self.editing = false,
                KeyCode::Backspace => {
                    self.filter.pop();
                }
                KeyCode::Char(c) if !ctrl => self.filter.push(c),
                _ => {}
            }
            self.selected = 0;
            return true;
        }
        let views = if self.all {
            &[View::Overview, View::Connections, View::Namespaces][..]
        } else {
            &[View::Overview, View::Connections][..]
        };
        match key.code {
            KeyCode::Char('q') => return false,
            KeyCode::Tab | KeyCode::BackTab => {
                let at = views.iter().position(|v| *v == self.view).unwrap_or(0);
                let step = if key.code == KeyCode::Tab {
                    1
                } else {
                    views.len() - 1
                };
                self.go(views[(at + step) % views.len()]);
            }
            KeyCode::Char('1') => self.go(View::Overview),
            KeyCode::Char('2') => self.go(View::Connections),
            KeyCode::Char('3') if self.all => self.go(View::Namespaces),
            KeyCode::Char('/') if self.view == View::Connections => {
                self.editing = true;
            }
            KeyCode::Esc => {
                self.filter.clear();
                self.selected = 0;
            }
            KeyCode::Char('s') if self.view == View::Connections => {
                self.sort.column = (self.sort.column + 1) % self.connection_header().len();
            }
            KeyCode::Char('r') if self.view == View::Connections => {
                self.sort.descending = !self.sort.descending;
            }
            KeyCode::Char('a') if self.view == View::Connections => {
                self.aggregated = !self.aggregated;
                self.sort.column = 0;
                self.selected = 0;
                self.dump_connections();
            }
            KeyCode::Down | KeyCode::Char('j') => {
                self.selected = (self.selected + 1).min(self.rows_shown().saturating_sub(1));
            }
            KeyCode::Up | KeyCode::Char('k') => self.selected = self.selected.saturating_sub(1),
            KeyCode::Enter if self.view == View::Namespaces => {
                if let Some(frame) = &self.frame {
                    let rows = model::namespace_rows(frame, self.before.as_ref());
                    if let Some(row) = rows.get(self.selected) {
                        self.shown = row.netns;
                        self.go(View::Overview);
                    }
                }
            }
            _ => {}
        }
        true
    }

    fn go(&mut self, view: View) {
        if view != self.view {
            self.view = view;
            self.selected = 0;
            if view == View::Connections {
                self.dump_connections();
            }
        }
    }
}

/// Set by SIGTERM and SIGQUIT: leave as after `q`.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn stop(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// SIGHUP: the terminal is gone, so there is nothing to restore, and
/// crossterm's reader would spin on its end of file (it retries a read
/// that returns 0): exit at once.
extern "C" fn hang_up(_: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(128 + libc::SIGHUP) }
}

/// Runs the view until `q`, Ctrl-C or a signal; the terminal is left as it
/// was found (a panic included: ratatui's hook restores it first).
pub fn run(netns: u32, all: bool) -> Result<(), String> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        return Err("top needs a terminal; for a stream of records use `netconn watch`".into());
    }
    let mut source = Source::find(netns, all);
    if all && source == Source::Poll {
        return Err(
            "top --all-namespaces needs a running `netconn watch --all-namespaces` (none serves /run/netconn/node.sock)"
                .into(),
        );
    }
    // No daemon: a watch of top's own, for as long as top runs (else
    // top's own dumps).
    let mut own = None;
    // Only root's watch can serve (/run/netconn is root's).
    if source == Source::Poll
        && nix::unistd::geteuid().is_root()
        && let Some((watch, served)) = source::OwnWatch::start(netns)
    {
        own = Some(watch);
        source = served;
    }
    // SAFETY: the handlers only store to an atomic, or _exit.
    unsafe {
        for signal in [libc::SIGTERM, libc::SIGQUIT] {
            libc::signal(
                signal,
                stop as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }
        libc::signal(
            libc::SIGHUP,
            hang_up as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
    }
    let mut app = App::new(source, netns, all);
    let mut terminal = ratatui::init();
    let result = (|| -> std::io::Result<()> {
        let mut asked: Option<Instant> = None;
        let mut dumped = Instant::now();
        loop {
            if asked.is_none_or(|t| t.elapsed() >= ASK_EVERY) {
                app.refresh();
                asked = Some(Instant::now());
            }
            if app.view == View::Connections && dumped.elapsed() >= DUMP_EVERY {
                app.dump_connections();
                dumped = Instant::now();
            }
            terminal.draw(|f| view::draw(f, &app))?;
            if STOP.load(Ordering::Relaxed) {
                return Ok(());
            }
            if event::poll(TICK)? {
                match event::read()? {
                    Event::Key(key) => {
                        if !app.key(key) {
                            return Ok(());
                        }
                        if app.view == View::Connections {
                            dumped = Instant::now();
                        }
                    }
                    // Redrawn at the next turn, at the new size.
                    Event::Resize(..) => {}
                    _ => {}
                }
            }
        }
    })();
    ratatui::restore();
    drop(own);
    result.map_err(|e| format!("terminal: {e}"))
}
