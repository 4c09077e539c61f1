//! Drawing `netconn top`'s screen from its [`App`]. Colours are the
//! terminal's own sixteen (they follow its theme, dark or light), and none
//! at all with `NO_COLOR`; what matters is also said by text or weight.

use ratatui::Frame as Screen;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Sparkline, Table, TableState, Wrap};

use super::model::{self, TYPES};
use super::{App, View};

/// A style, or none without colours.
fn paint(app: &App, color: Color) -> Style {
    if app.color {
        Style::default().fg(color)
    } else {
        Style::default()
    }
}

fn bold() -> Style {
    Style::default().add_modifier(Modifier::BOLD)
}

pub fn draw(f: &mut Screen, app: &App) {
    let [top, body, keys] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(4),
        Constraint::Length(1),
    ])
    .areas(f.area());
    header(f, app, top);
    match app.view {
        View::Overview => overview(f, app, body),
        View::Connections => connections(f, app, body),
        View::Namespaces => namespaces(f, app, body),
    }
    footer(f, app, keys);
}

fn header(f: &mut Screen, app: &App, area: Rect) {
    let tab = |v: View, name: &str| {
        let style = if app.view == v {
            bold().add_modifier(Modifier::REVERSED)
        } else {
            Style::default()
        };
        Span::styled(format!(" {name} "), style)
    };
    let mut tabs = vec![
        Span::styled("netconn top ", bold()),
        tab(View::Overview, "1 Overview"),
        tab(View::Connections, "2 Connections"),
    ];
    if app.all {
        tabs.push(tab(View::Namespaces, "3 Namespaces"));
    }
    let time = app
        .frame
        .as_ref()
        .and_then(model::Frame::time)
        .unwrap_or("waiting for the first interval");
    tabs.push(Span::raw(format!("  {}  {time}", app.host)));
    let second = match &app.problem {
        Some(p) => Line::styled(
            p.clone(),
            paint(app, Color::Red).add_modifier(Modifier::BOLD),
        ),
        None => {
            // How the records were counted: the kernel's events, or polls.
            let counted = app
                .frame
                .as_ref()
                .and_then(|f| f.counts.first())
                .and_then(|r| r["source"].as_str())
                .map_or_else(String::new, |s| format!("  (counting: {s})"));
            Line::raw(format!("{}{counted}", app.source.describe(app.netns)))
        }
    };
    f.render_widget(Paragraph::new(vec![Line::from(tabs), second]), area);
}

fn footer(f: &mut Screen, app: &App, area: Rect) {
    let keys = if app.editing {
        format!("Filter: {}_   Enter done  Esc done", app.filter)
    } else {
        let mut k = String::from("q quit  Tab view");
        match app.view {
            View::Connections => {
                k.push_str("  / filter  Esc clear  s sort  r reverse  a aggregate  ↑↓ move");
                if !app.filter.is_empty() {
                    k.push_str(&format!("   filter: {}", app.filter));
                }
            }
            View::Namespaces => k.push_str("  ↑↓ move  Enter overview"),
            View::Overview => {}
        }
        k
    };
    f.render_widget(
        Paragraph::new(Line::styled(
            keys,
            Style::default().add_modifier(Modifier::REVERSED),
        )),
        area,
    );
}

fn boxed(title: &str) -> Block<'_> {
    Block::default()
        .borders(Borders::ALL)
        .title(Span::styled(format!(" {title} "), bold()))
}

fn overview(f: &mut Screen, app: &App, area: Rect) {
    let record = app.frame.as_ref().and_then(|fr| fr.of(app.shown));
    let before = app.before.as_ref().and_then(|fr| fr.of(app.shown));
    let [upper, lower] = Layout::vertical([Constraint::Length(16), Constraint::Min(3)]).areas(area);
    let [states, right] =
        Layout::horizontal([Constraint::Length(62), Constraint::Min(20)]).areas(upper);
    let title = match record.map(|r| &r["owner"]) {
        Some(owner) if owner.is_object() => format!(
            "Connections by state — netns {} {}",
            app.shown,
            crate::host::printable(&crate::namespaces::owner::Owner::label_of(owner))
        ),
        _ => format!("Connections by state — netns {}", app.shown),
    };
    let Some(record) = record else {
        let text = if app.frame.is_some() {
            format!("namespace {} is not counted", app.shown)
        } else {
            "waiting for the daemon's first interval".to_owned()
        };
        f.render_widget(Paragraph::new(text).block(boxed(&title)), states);
        return;
    };
    state_table(f, app, record, before, states, &title);
    let [charts, metrics] =
        Layout::vertical([Constraint::Min(9), Constraint::Length(7)]).areas(right);
    rates(f, app, charts);
    tcp_metrics(f, record, metrics);
    let [listeners_area, alerts_area] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(lower);
    if record["ephemeral_ports"]["top"].is_array() {
        let [l, e] =
            Layout::vertical([Constraint::Min(4), Constraint::Length(8)]).areas(listeners_area);
        listeners(f, record, l);
        ephemeral(f, &record["ephemeral_ports"], e);
    } else {
        listeners(f, record, listeners_area);
    }
    alerts(f, app, alerts_area);
}

/// The ephemeral ports each destination uses, the busiest first.
fn ephemeral(f: &mut Screen, e: &serde_json::Value, area: Rect) {
    let empty = Vec::new();
    let top = e["top"].as_array().unwrap_or(&empty);
    let rows = top.iter().map(|d| {
        Row::new(vec![
            Cell::from(format!(
                "{} → {}:{}",
                d["laddr"].as_str().unwrap_or("?"),
                d["raddr"].as_str().unwrap_or("?"),
                d["rport"]
            )),
            Cell::from(d["in_use"].to_string()),
            Cell::from(d["time_wait"].to_string()),
            Cell::from(format!(
                "{:.2}%",
                d["utilization"].as_f64().unwrap_or(0.0) * 100.0
            )),
        ])
    });
    let title = format!(
        "Ephemeral ports by destination (range {}-{})",
        e["range"][0], e["range"][1]
    );
    f.render_widget(
        Table::new(
            rows,
            [
                Constraint::Min(30),
                Constraint::Length(8),
                Constraint::Length(10),
                Constraint::Length(7),
            ],
        )
        .header(Row::new(["DESTINATION", "IN USE", "TIME_WAIT", "USED"]).style(bold()))
        .block(boxed(&title)),
        area,
    );
}

fn state_table(
    f: &mut Screen,
    app: &App,
    record: &serde_json::Value,
    before: Option<&serde_json::Value>,
    area: Rect,
    title: &str,
) {
    let rows = model::state_rows(record, before);
    let body = rows.iter().map(|r| {
        let mut cells = vec![Cell::from(r.state)];
        for c in &r.cells {
            cells.push(match c {
                None => Cell::from(format!("{:>7}", "-")),
                Some(c) => {
                    let change = model::change(c.change);
                    let style = match c.change {
                        0 => Style::default(),
                        n if n > 0 => paint(app, Color::Green),
                        _ => paint(app, Color::Red),
                    };
                    Cell::from(Line::from(vec![
                        Span::raw(format!("{:>7}", c.now)),
                        Span::styled(format!(" {change:<5}"), style),
                    ]))
                }
            });
        }
        Row::new(cells)
    });
    let total = record["total"].as_i64().unwrap_or(0);
    let header = std::iter::once("STATE").chain(TYPES).map(|t| {
        Cell::from(if t == "STATE" {
            t.to_owned()
        } else {
            format!("{t:>7}")
        })
    });
    let widths = [
        Constraint::Length(12),
        Constraint::Length(13),
        Constraint::Length(13),
        Constraint::Length(13),
        Constraint::Length(13),
    ];
    f.render_widget(
        Table::new(body, widths)
            .header(Row::new(header).style(bold()))
            .block(boxed(title).title_bottom(format!(" total {total} "))),
        area,
    );
}

/// The per-second figures over the last minutes, a sparkline each.
fn rates(f: &mut Screen, app: &App, area: Rect) {
    let block = boxed("Over the last minutes (per second of each interval)");
    let inner = block.inner(area);
    f.render_widget(block, area);
    let Some(history) = app.histories.get(&app.shown) else {
        return;
    };
    type Pick = fn(&model::Point) -> Option<f64>;
    let lines: [(&str, Pick); 7] = [
        ("connections", |p| Some(p.total as f64)),
        ("established", |p| Some(p.established as f64)),
        ("opened/s", |p| p.opened),
        ("closed/s", |p| p.closed),
        ("failed/s", |p| p.failed),
        ("resets/s", |p| p.resets),
        ("retrans/s", |p| p.retrans),
    ];
    let rows = Layout::vertical(lines.iter().map(|_| Constraint::Length(1))).split(inner);
    for ((name, pick), row) in lines.iter().zip(rows.iter()) {
        let [label, spark] =
            Layout::horizontal([Constraint::Length(24), Constraint::Min(4)]).areas(*row);
        let last = history.last().and_then(pick);
        let now = last.map_or_else(|| "-".to_owned(), format_rate);
        f.render_widget(Paragraph::new(format!("{name:<12}{now:>11} ")), label);
        let width = usize::from(spark.width);
        let data: Vec<u64> = history
            .points()
            .rev()
            .take(width)
            .rev()
            .map(|p| pick(p).map_or(0, |v| (v * 100.0).round().max(0.0) as u64))
            .collect();
        f.render_widget(
            Sparkline::default()
                .data(&data)
                .style(paint(app, Color::Cyan)),
            spark,
        );
    }
}

fn format_rate(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn tcp_metrics(f: &mut Screen, record: &serde_json::Value, area: Rect) {
    let m = &record["tcp_metrics"];
    let n = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "-".to_owned(),
        v => v.to_string(),
    };
    let ms = |v: &serde_json::Value| {
        v.as_f64()
            .map_or_else(|| "-".to_owned(), |us| format!("{:.2} ms", us / 1000.0))
    };
    let text = if m.is_object() {
        let rtt = &m["rtt_us"];
        let failed: u64 = (m["failed_connects"].as_object()).map_or(0, |o| {
            o.values().filter_map(serde_json::Value::as_u64).sum()
        });
        vec![
            Line::raw(format!(
                "RTT p50 {}  p99 {}  max {}  ({} samples)",
                ms(&rtt["p50"]),
                ms(&rtt["p99"]),
                ms(&rtt["max"]),
                n(&rtt["count"])
            )),
            Line::raw(format!(
                "retransmitted {}  SYN-ACK retransmits {}",
                n(&m["retrans"]),
                n(&m["synack_retrans"])
            )),
            Line::raw(format!(
                "resets sent {}  received {}  listen overflows {}  drops {}",
                n(&m["resets_sent"]),
                n(&m["resets_received"]),
                n(&m["listen_overflows"]),
                n(&m["listen_drops"])
            )),
            Line::raw(format!(
                "accepted {}  connected {}  closed {}  failed connects {failed}",
                n(&m["accepted"]),
                n(&m["connected"]),
                n(&m["closed"])
            )),
        ]
    } else {
        vec![Line::raw("none (polling, or --no-tcp-metrics)")]
    };
    f.render_widget(
        Paragraph::new(text).block(boxed("TCP metrics of the last interval")),
        area,
    );
}

fn listeners(f: &mut Screen, record: &serde_json::Value, area: Rect) {
    let empty = Vec::new();
    let list = record["listeners"].as_array().unwrap_or(&empty);
    let s = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => crate::host::printable(s).into_owned(),
        serde_json::Value::Null => "-".to_owned(),
        v => v.to_string(),
    };
    let rows = list.iter().map(|l| {
        let queue = l["accept_queue"].as_u64().unwrap_or(0);
        let backlog = l["backlog"].as_u64().unwrap_or(0).max(1);
        let fill = queue as f64 * 100.0 / backlog as f64;
        let process = match (&l["pid"], &l["comm"]) {
            (serde_json::Value::Null, _) => "-".to_owned(),
            (pid, comm) => format!("{}/{}", s(pid), s(comm)),
        };
        let style = if fill >= 90.0 {
            bold()
        } else {
            Style::default()
        };
        Row::new(vec![
            Cell::from(format!("{}:{}", s(&l["addr"]), s(&l["port"]))),
            Cell::from(process),
            Cell::from(format!("{queue}/{}", s(&l["backlog"]))),
            Cell::from(format!("{fill:.0}%")),
            Cell::from(s(&l["syn_backlog"])),
            Cell::from(s(&l["drops"])),
        ])
        .style(style)
    });
    let widths = [
        Constraint::Min(18),
        Constraint::Min(12),
        Constraint::Length(11),
        Constraint::Length(5),
        Constraint::Length(6),
        Constraint::Length(6),
    ];
    let title = if record["listeners"].is_array() {
        "Listeners (accept queue)"
    } else {
        "Listeners: none reported (polling)"
    };
    f.render_widget(
        Table::new(rows, widths)
            .header(
                Row::new(["LISTEN", "PROCESS", "QUEUE", "FILL", "SYN_Q", "DROPS"]).style(bold()),
            )
            .block(boxed(title)),
        area,
    );
}

fn alerts(f: &mut Screen, app: &App, area: Rect) {
    let title = format!("Active alerts ({})", app.alerts.len());
    let lines: Vec<Line> = if app.alerts.is_empty() {
        vec![Line::raw("none")]
    } else {
        app.alerts
            .iter()
            .map(|a| {
                let color = if a.status == "critical" {
                    Color::Red
                } else {
                    Color::Yellow
                };
                let time = a.time.split('T').nth(1).unwrap_or(&a.time);
                Line::from(vec![
                    Span::styled(
                        crate::host::printable(&format!(
                            "{} {} ",
                            a.status.to_uppercase(),
                            a.alert
                        ))
                        .into_owned(),
                        paint(app, color).add_modifier(Modifier::BOLD),
                    ),
                    Span::raw(
                        crate::host::printable(&format!("{time} netns {} {}", a.netns, a.detail))
                            .into_owned(),
                    ),
                ])
            })
            .collect()
    };
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(boxed(&title)),
        area,
    );
}

fn connections(f: &mut Screen, app: &App, area: Rect) {
    let header = app.connection_header();
    let rows = model::filtered_sorted(&app.connections, &app.filter, app.sort);
    let title = format!(
        "{} of netns {} — {} shown, sorted by {}{}",
        if app.aggregated {
            "Connections grouped"
        } else {
            "Connections"
        },
        app.connections_of,
        rows.len(),
        header.get(app.sort.column).unwrap_or(&"?"),
        if app.sort.descending { " ↓" } else { " ↑" },
    );
    let widths: Vec<Constraint> = header
        .iter()
        .map(|h| match *h {
            "LOCAL" | "REMOTE" => Constraint::Min(22),
            "PID/COMM" | "PROCESS" => Constraint::Min(16),
            // The longest state, ESTABLISHED.
            "STATE" => Constraint::Length(12),
            "SENT" | "RECV" => Constraint::Length(12),
            _ => Constraint::Length(h.len() as u16 + 2),
        })
        .collect();
    let table = Table::new(rows.into_iter().map(Row::new), widths)
        .header(Row::new(header.iter().copied()).style(bold()))
        .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED))
        .block(boxed(&title));
    let mut state = TableState::default().with_selected(Some(app.selected));
    f.render_stateful_widget(table, area, &mut state);
}

fn namespaces(f: &mut Screen, app: &App, area: Rect) {
    let Some(frame) = &app.frame else {
        f.render_widget(
            Paragraph::new("waiting for the daemon's first interval").block(boxed("Namespaces")),
            area,
        );
        return;
    };
    let rows = model::namespace_rows(frame, app.before.as_ref());
    let host_total = frame
        .host
        .as_ref()
        .and_then(|h| h["total"].as_i64())
        .unwrap_or_default();
    let title = format!(
        "Namespaces — {} counted, {host_total} connections in all",
        rows.len()
    );
    let trend = |netns: u64| -> String {
        const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
        let Some(h) = app.histories.get(&netns) else {
            return String::new();
        };
        let totals: Vec<i64> = h.points().rev().take(20).rev().map(|p| p.total).collect();
        let max = totals.iter().copied().max().unwrap_or(0).max(1);
        totals
            .iter()
            .map(|t| BARS[((*t * 7) / max).clamp(0, 7) as usize])
            .collect()
    };
    let body = rows.iter().map(|r| {
        Row::new(vec![
            Cell::from(r.netns.to_string()),
            Cell::from(r.owner.clone()),
            Cell::from(r.total.to_string()),
            Cell::from(model::change(r.change)),
            Cell::from(r.established.to_string()),
            Cell::from(r.listen.to_string()),
            Cell::from(trend(r.netns)),
        ])
    });
    let widths = [
        Constraint::Length(12),
        Constraint::Min(20),
        Constraint::Length(8),
        Constraint::Length(7),
        Constraint::Length(12),
        Constraint::Length(7),
        Constraint::Length(22),
    ];
    let table = Table::new(body, widths)
        .header(
            Row::new([
                "NETNS",
                "OWNER",
                "TOTAL",
                "CHANGE",
                "ESTABLISHED",
                "LISTEN",
                "TOTAL OVER TIME",
            ])
            .style(bold()),
        )
        .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED))
        .block(boxed(&title));
    let mut state = TableState::default().with_selected(Some(app.selected));
    f.render_stateful_widget(table, area, &mut state);
}
