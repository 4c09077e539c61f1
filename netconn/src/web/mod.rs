//! The page beside `/metrics` (`watch --listen`): the same overview,
//! connections, namespaces and alerts `netconn top` shows, for a browser.
//! Every asset is served by the binary (nodes have no internet: no CDN, no
//! build step); the page follows the daemon live through Server-Sent
//! Events carrying the records the NDJSON has (`/events`), and reconnects
//! by itself when the daemon restarts.

use std::io;
use std::time::{Duration, Instant};

use crate::live::serve::{Board, Request};

/// A static file of the page: its type and bytes.
pub struct Asset {
    pub content_type: &'static str,
    pub body: &'static str,
}

/// The page's files, by path.
pub fn asset(path: &str) -> Option<Asset> {
    let (content_type, body) = match path {
        "/" | "/index.html" => (
            "text/html; charset=utf-8",
            include_str!("assets/index.html"),
        ),
        "/app.js" => (
            "text/javascript; charset=utf-8",
            include_str!("assets/app.js"),
        ),
        "/app.css" => ("text/css; charset=utf-8", include_str!("assets/app.css")),
        _ => return None,
    };
    Some(Asset { content_type, body })
}

/// What the page's answers say besides their type: nothing from
/// elsewhere runs in it, and it is framed nowhere.
pub const PAGE_HEADERS: &[(&str, &str)] = &[
    (
        "content-security-policy",
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("cache-control", "no-store"),
];

/// Most event streams at once (a browser tab each); they never take the
/// slots scrapes need.
pub const MAX_STREAMS: usize = 4;
/// How often a stream looks for a new interval.
const LOOK_EVERY: Duration = Duration::from_millis(500);
/// A comment line this often keeps proxies from closing a quiet stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One event: its name, and each JSON line of `lines` as a `data:` line
/// (the browser joins them with newlines); at least one, empty when there
/// are no lines (a browser drops an event without data: cleared alerts
/// would stay on the page).
fn event(name: &str, lines: &[u8]) -> Vec<u8> {
    let mut out = format!("event: {name}\n").into_bytes();
    let mut any = false;
    for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line);
        out.push(b'\n');
        any = true;
    }
    if !any {
        out.extend_from_slice(b"data: \n");
    }
    out.push(b'\n');
    out
}

/// Streams the board to one browser, into its answer's body (`out`),
/// until it goes away (the body is dropped) or a piece waits longer than
/// `deadline` to be taken: the records of each new interval (at first the
/// counts answer, until the loop has kept an interval's records) and the
/// alerts whenever they change.
pub async fn stream(
    out: tokio::sync::mpsc::Sender<bytes::Bytes>,
    board: &Board,
    deadline: Duration,
) {
    let send = |piece: Vec<u8>| {
        let out = out.clone();
        async move {
            matches!(
                tokio::time::timeout(deadline, out.send(piece.into())).await,
                Ok(Ok(()))
            )
        }
    };
    if !send(b"retry: 2000\n\n".to_vec()).await {
        return;
    }
    let (mut sent_records, mut sent_alerts) = (None::<Vec<u8>>, None::<Vec<u8>>);
    let mut quiet = Instant::now();
    loop {
        let mut piece = Vec::new();
        let mut records = board.records();
        if records.is_empty() && sent_records.is_none() {
            records = board.answer(Request::Counts).unwrap_or_default();
        }
        if !records.is_empty() && sent_records.as_ref() != Some(&records) {
            piece.extend(event("records", &records));
            sent_records = Some(records);
        }
        let alerts = board.answer(Request::Alerts).unwrap_or_default();
        if sent_alerts.as_ref() != Some(&alerts) {
            piece.extend(event("alerts", &alerts));
            sent_alerts = Some(alerts);
        }
        if piece.is_empty() && quiet.elapsed() >= KEEP_ALIVE {
            piece.extend_from_slice(b": still here\n\n");
        }
        if !piece.is_empty() {
            if !send(piece).await {
                return;
            }
            quiet = Instant::now();
        }
        tokio::select! {
            _ = tokio::time::sleep(LOOK_EVERY) => {}
            // A closed tab gives its slot back at once.
            _ = out.closed() => return,
        }
    }
}

/// A connections listing made at most every [`LIST_EVERY`], one dump at a
/// time, whoever asks.
#[derive(Default)]
pub struct Listing(tokio::sync::Mutex<Option<(Instant, std::sync::Arc<Vec<u8>>)>>);

/// How long a connections listing is served again.
pub const LIST_EVERY: Duration = Duration::from_secs(2);

impl Listing {
    /// The listing, dumped again if older than [`LIST_EVERY`].
    pub async fn get(&self) -> io::Result<std::sync::Arc<Vec<u8>>> {
        let mut cached = self.0.lock().await;
        if let Some((at, json)) = cached.as_ref()
            && at.elapsed() < LIST_EVERY
        {
            return Ok(json.clone());
        }
        let json = tokio::task::spawn_blocking(connections)
            .await
            .map_err(io::Error::other)??;
        let json = std::sync::Arc::new(json);
        *cached = Some((Instant::now(), json.clone()));
        Ok(json)
    }
}

/// The daemon's namespace's sockets, as `netconn list --json` prints them
/// (a dump, on the caller's thread: call it off the runtime's).
pub fn connections() -> io::Result<Vec<u8>> {
    let netns = crate::host::netns_inode()?;
    let procs = crate::tables::procs::Processes::new(false);
    let rows = crate::list::rows(&procs, netns)?;
    let mut out = Vec::new();
    crate::list::write_json(
        &[crate::list::Namespaced {
            netns,
            owner: None,
            rows,
        }],
        &mut out,
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_carry_each_line_as_data() {
        let e = event("records", b"{\"a\":1}\n{\"b\":2}\n");
        assert_eq!(
            String::from_utf8(e).unwrap(),
            "event: records\ndata: {\"a\":1}\ndata: {\"b\":2}\n\n"
        );
        assert_eq!(
            String::from_utf8(event("alerts", b"")).unwrap(),
            "event: alerts\ndata: \n\n",
            "an event with nothing still carries data, or browsers drop it"
        );
    }

    #[test]
    fn the_page_and_its_files_are_served_and_nothing_else() {
        for path in ["/", "/app.js", "/app.css"] {
            assert!(!asset(path).unwrap().body.is_empty(), "{path}");
        }
        assert!(asset("/../etc/passwd").is_none());
        assert!(asset("/index.html").unwrap().body.contains("app.js"));
    }
}
