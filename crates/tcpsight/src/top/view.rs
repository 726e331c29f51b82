//! Drawing the screen with ratatui: header line, status line, the table (or one
//! endpoint's connections), key hints or the filter prompt, and the help box.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Clear, Paragraph, Row as TRow, Table, TableState};

use super::keys::{HELP, Ui};
use super::model::{Conn, Model, TopRow};
use crate::format::{human_duration, thousands, utc};
use crate::output::table::{self, COLUMN_SORT};

pub use crate::output::table::Thresholds;

/// Everything one frame shows.
pub struct Screen<'a> {
    pub model: &'a Model,
    pub rows: &'a [TopRow],
    /// The drill-down: the endpoint's label and its recent connections.
    pub detail: Option<(&'a str, &'a [Conn])>,
    pub ui: &'a Ui,
    /// "FILE (replay 1x)", "IFACE (live)".
    pub source: &'a str,
    /// "end of capture" and the like.
    pub status: &'a str,
    pub window_ns: u64,
    pub thresholds: &'a Thresholds,
    /// Live: kernel drops are known (a file has none to report).
    pub live: bool,
}

const HOT: Style = Style::new().fg(Color::Red).add_modifier(Modifier::BOLD);
const ALERT: Style = Style::new()
    .fg(Color::White)
    .bg(Color::Red)
    .add_modifier(Modifier::BOLD);
const TITLE: Style = Style::new().add_modifier(Modifier::BOLD);
const DIM: Style = Style::new().fg(Color::DarkGray);

/// Rows that fit in the table area below its header line.
pub fn page_rows(height: u16) -> usize {
    height.saturating_sub(4) as usize
}

fn seconds(ns: u64) -> String {
    let s = ns as f64 / 1e9;
    if s >= 3600.0 {
        format!(
            "{}h{:02}m",
            (s / 3600.0) as u64,
            ((s % 3600.0) / 60.0) as u64
        )
    } else if s >= 60.0 {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!("{s:.1}s")
    }
}

/// The header line in `width` columns: whole parts only. When everything does not fit,
/// the least needed parts go (elapsed time, then rates, then the source), never half a
/// number.
fn header_line(s: &Screen, width: u16) -> Line<'static> {
    let m = s.model;
    let window = (!s.ui.cumulative).then_some(s.window_ns);
    let (pps, cps) = m.rates(window);
    let trust = |label: &str, n: u64| {
        if n > 0 {
            Span::styled(format!("{} {}", label.to_uppercase(), thousands(n)), ALERT)
        } else {
            Span::raw(format!("{label} 0"))
        }
    };
    // (part, how much it is needed: 0 most)
    let mut parts: Vec<(Vec<Span<'static>>, u8)> = vec![
        (vec![Span::styled("tcpsight top", TITLE)], 0),
        (vec![Span::raw(format!(" {}", s.source))], 3),
        (
            vec![Span::raw(format!(" | {pps:.0} pkt/s {cps:.1} conn/s"))],
            2,
        ),
        (
            vec![Span::raw(format!(
                " | elapsed {}",
                seconds((m.elapsed_s() * 1e9) as u64)
            ))],
            4,
        ),
    ];
    let drops = if s.live {
        trust("drops", m.kernel_drops)
    } else {
        Span::raw("drops -")
    };
    parts.push((
        vec![
            Span::raw(" | "),
            drops,
            Span::raw(" "),
            trust("gaps", m.gap_conns),
        ],
        0,
    ));
    // Copies of packets seen on two interfaces (-i any): dropped, so nothing is wrong;
    // said so the frame count is understood.
    if let Some(c) = m.copies.filter(|c| *c > 0) {
        parts.push((vec![Span::raw(format!(" | copies {}", thousands(c)))], 1));
    }
    let len = |p: &[(Vec<Span>, u8)]| -> usize {
        p.iter()
            .flat_map(|(s, _)| s.iter())
            .map(|s| s.width())
            .sum()
    };
    for level in (1..=4).rev() {
        if len(&parts) <= width as usize {
            break;
        }
        parts.retain(|(_, need)| *need < level);
    }
    Line::from(parts.into_iter().flat_map(|(s, _)| s).collect::<Vec<_>>())
}

fn status_line(s: &Screen, shown: usize, hidden: Hidden) -> Line<'static> {
    let ui = s.ui;
    let mut spans = Vec::new();
    if ui.cumulative {
        spans.push(Span::raw("cumulative"));
    } else {
        spans.push(Span::raw(format!("window {}", seconds(s.window_ns))));
    }
    let col = COLUMN_SORT
        .iter()
        .position(|c| *c == ui.sort)
        .map_or("?", |i| table::HEADER[i]);
    // Numbers sort descending, hosts ascending by address; `i` reverses either.
    let ascending = (ui.sort == table::SortBy::Host) != ui.reverse;
    let arrow = if ascending { "asc" } else { "desc" };
    spans.push(Span::raw(format!(" | sort {col} {arrow}")));
    if !ui.filter.is_empty() {
        spans.push(Span::raw(" | filter "));
        spans.push(Span::styled(ui.filter.text.clone(), TITLE));
    }
    if let Some((label, conns)) = s.detail {
        spans.push(Span::raw(format!(
            " | {label}: {} recent connections",
            conns.len()
        )));
    } else {
        let noun = if shown == 1 { "row" } else { "rows" };
        spans.push(Span::raw(format!(" | {shown} {noun}")));
    }
    match (hidden.left, hidden.right) {
        (0, 0) => {}
        (0, r) => spans.push(Span::raw(format!(" | {r} columns off screen ]"))),
        (l, 0) => spans.push(Span::raw(format!(" | [ {l} columns off screen"))),
        (l, r) => spans.push(Span::raw(format!(" | [ {l}+{r} columns off screen ]"))),
    }
    if !s.status.is_empty() {
        spans.push(Span::raw(format!(" | {}", s.status)));
    }
    if s.model.evicted > 0 {
        spans.push(Span::styled(
            format!(" | oldest {} forgotten", thousands(s.model.evicted)),
            HOT,
        ));
    }
    if ui.paused {
        spans.push(Span::raw(" "));
        spans.push(Span::styled(" PAUSED ", ALERT));
    }
    Line::from(spans)
}

fn footer(s: &Screen, width: u16) -> Line<'static> {
    if let Some(t) = &s.ui.input {
        return Line::from(vec![
            Span::styled("filter> ", TITLE),
            Span::raw(format!("{t}_")),
            Span::styled(
                "  (Enter apply, Esc cancel; host: port: net: outcome:)",
                DIM,
            ),
        ]);
    }
    if let Some(e) = &s.ui.error {
        return Line::from(Span::styled(e.clone(), HOT));
    }
    if s.detail.is_some() {
        return Line::from(Span::styled(
            "Esc back  Up/Down scroll  Space pause  r reset  ? help  q quit",
            DIM,
        ));
    }
    // Whole hints only, as many as the width holds.
    let hints = [
        "q quit",
        "? help",
        "/ filter",
        "Enter details",
        "< > sort",
        "[ ] columns",
        "i reverse",
        "Space pause",
        "w window",
        "r reset",
    ];
    let mut text = String::new();
    for h in hints {
        let sep = if text.is_empty() { "" } else { "  " };
        if text.len() + sep.len() + h.len() > width as usize {
            break;
        }
        text.push_str(sep);
        text.push_str(h);
    }
    Line::from(Span::styled(text, DIM))
}

/// The first row shown so that `selected` is visible in `page` rows.
fn offset(selected: usize, page: usize) -> usize {
    (selected + 1).saturating_sub(page.max(1))
}

/// Each column's width: its widest cell or title.
fn column_widths(header: &[&str], rows: &[Vec<String>]) -> Vec<usize> {
    (0..header.len())
        .map(|c| {
            rows.iter()
                .map(|r| r[c].chars().count())
                .chain([header[c].chars().count()])
                .max()
                .unwrap_or(1)
        })
        .collect()
}

/// The columns shown in `width`: Host, then from column `1 + offset` as many whole
/// columns as fit (two spaces between columns).
fn visible_columns(widths: &[usize], width: u16, offset: usize) -> Vec<usize> {
    let mut used = widths[0];
    let mut out = vec![0];
    for (c, w) in widths.iter().enumerate().skip(1 + offset) {
        if used + 2 + w > width as usize {
            break;
        }
        used += 2 + w;
        out.push(c);
    }
    out
}

/// The scroll offset that shows column `col`: the smallest change from `offset`.
fn offset_showing(widths: &[usize], width: u16, offset: usize, col: usize) -> usize {
    if col == 0 {
        return offset;
    }
    if col < 1 + offset {
        return col - 1;
    }
    let mut off = offset;
    while off + 1 < col && !visible_columns(widths, width, off).contains(&col) {
        off += 1;
    }
    off
}

/// What the table's drawing left out: columns scrolled off to the left and off to
/// the right, and the scroll offset used.
#[derive(Clone, Copy, Debug, Default)]
pub struct Hidden {
    pub left: usize,
    pub right: usize,
    pub offset: usize,
}

/// Draws the table; returns which columns did not fit.
fn draw_table(f: &mut Frame, s: &Screen, area: Rect) -> Hidden {
    let page = area.height.saturating_sub(1) as usize;
    if s.rows.is_empty() {
        let msg = if s.ui.filter.is_empty() {
            "(no connections yet in this view)"
        } else {
            "(no endpoint matches the filter)"
        };
        let hdr = table::HEADER.join("  ");
        f.render_widget(
            Paragraph::new(vec![Line::styled(hdr, TITLE), Line::styled(msg, DIM)]),
            area,
        );
        return Hidden {
            offset: s.ui.col_offset,
            ..Hidden::default()
        };
    }
    let cells: Vec<Vec<String>> = s
        .rows
        .iter()
        .map(|r| table::cells(&r.shown()).into())
        .collect();
    let all = column_widths(&table::HEADER, &cells);
    let sort_col = COLUMN_SORT.iter().position(|c| *c == s.ui.sort);
    let max_offset = table::HEADER.len() - 2;
    let mut col_off = s.ui.col_offset.min(max_offset);
    if let (true, Some(c)) = (s.ui.follow_sort, sort_col) {
        col_off = offset_showing(&all, area.width, col_off, c);
    }
    let cols = visible_columns(&all, area.width, col_off);
    let w: Vec<Constraint> = cols
        .iter()
        .map(|&c| Constraint::Length(all[c].min(area.width as usize) as u16))
        .collect();
    let header = TRow::new(cols.iter().map(|&i| {
        let mut st = TITLE;
        if Some(i) == sort_col {
            st = st.add_modifier(Modifier::UNDERLINED).fg(Color::Cyan);
        }
        let line = Line::from(Span::styled(table::HEADER[i], st));
        Cell::from(if i == 0 { line } else { line.right_aligned() })
    }));
    let body: Vec<TRow> = s
        .rows
        .iter()
        .zip(&cells)
        .map(|(r, c)| {
            TRow::new(cols.iter().map(|&i| {
                let st = if s.thresholds.hot(i, &r.row) {
                    HOT
                } else {
                    Style::default()
                };
                let line = Line::from(Span::styled(c[i].clone(), st));
                Cell::from(if i == 0 { line } else { line.right_aligned() })
            }))
        })
        .collect();
    let sel = s.ui.selected.min(s.rows.len() - 1);
    let mut state = TableState::new()
        .with_offset(offset(sel, page))
        .with_selected(Some(sel));
    let t = Table::new(body, w)
        .header(header)
        .column_spacing(2)
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    f.render_stateful_widget(t, area, &mut state);
    let last = cols.last().copied().unwrap_or(0);
    Hidden {
        left: col_off,
        right: table::HEADER.len() - 1 - last.max(col_off),
        offset: col_off,
    }
}

const DETAIL_HEADER: [&str; 12] = [
    "Time (UTC)",
    "Client",
    "Server",
    "Outcome",
    "Close",
    "Connect",
    "Exch",
    "Retx",
    "Out",
    "In",
    "Gap",
    "Duration",
];

fn endpoint(e: tcpsight_core::Endpoint) -> String {
    if e.addr.is_v4() {
        format!("{}:{}", e.addr, e.port)
    } else {
        format!("[{}]:{}", e.addr, e.port)
    }
}

fn detail_cells(m: &Model, c: &Conn) -> Vec<String> {
    let t = utc(c.ts_first_ns, 3);
    let open = matches!(c.state, super::model::State::Open(_));
    let dash = || "-".to_string();
    vec![
        t.get(11..).unwrap_or(&t).to_string(),
        endpoint(m.shown_endpoint(c.client)),
        endpoint(m.shown_endpoint(c.server)),
        c.state.name().to_string(),
        if open {
            dash()
        } else {
            c.close.name().to_string()
        },
        c.facts.connect_ns.map_or_else(dash, human_duration),
        c.facts.exchanges.map_or_else(dash, |x| x.to_string()),
        if open {
            dash()
        } else {
            c.facts.retx.to_string()
        },
        if open {
            dash()
        } else {
            c.facts.out_msgs.to_string()
        },
        if open {
            dash()
        } else {
            c.facts.in_msgs.to_string()
        },
        if c.facts.gap { "yes".into() } else { dash() },
        if open {
            dash()
        } else {
            human_duration(c.ts_ns.saturating_sub(c.ts_first_ns))
        },
    ]
}

/// Draws the drill-down list; returns how many columns did not fit.
fn draw_detail(f: &mut Frame, s: &Screen, conns: &[Conn], area: Rect) -> Hidden {
    let page = area.height.saturating_sub(1) as usize;
    let cells: Vec<Vec<String>> = conns.iter().map(|c| detail_cells(s.model, c)).collect();
    if cells.is_empty() {
        f.render_widget(
            Paragraph::new(vec![
                Line::styled(DETAIL_HEADER.join("  "), TITLE),
                Line::styled("(no connections in this view)", DIM),
            ]),
            area,
        );
        return Hidden {
            offset: s.ui.col_offset,
            ..Hidden::default()
        };
    }
    // The drill-down does not scroll: the leftmost whole columns that fit.
    let all = column_widths(&DETAIL_HEADER, &cells);
    let n = visible_columns(&all, area.width, 0).len();
    let w: Vec<Constraint> = all[..n]
        .iter()
        .map(|&c| Constraint::Length(c.min(area.width as usize) as u16))
        .collect();
    let header = TRow::new(
        DETAIL_HEADER
            .iter()
            .take(n)
            .map(|h| Cell::from(Span::styled(*h, TITLE))),
    );
    let body: Vec<TRow> = conns
        .iter()
        .zip(&cells)
        .map(|(c, cells)| {
            TRow::new(cells.iter().take(n).enumerate().map(|(i, text)| {
                let bad = match i {
                    3 => !matches!(c.state.name(), "established" | "open" | "midstream"),
                    4 => text == "rst",
                    7 => c.facts.retx > 0,
                    10 => c.facts.gap,
                    _ => false,
                };
                Cell::from(Span::styled(
                    text.clone(),
                    if bad { HOT } else { Style::default() },
                ))
            }))
        })
        .collect();
    let sel = s.ui.detail_selected.min(conns.len() - 1);
    let mut state = TableState::new()
        .with_offset(offset(sel, page))
        .with_selected(Some(sel));
    let t = Table::new(body, w)
        .header(header)
        .column_spacing(2)
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    f.render_stateful_widget(t, area, &mut state);
    Hidden {
        left: 0,
        right: DETAIL_HEADER.len() - n,
        offset: s.ui.col_offset,
    }
}

fn draw_help(f: &mut Frame, area: Rect) {
    let kw = HELP.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut lines: Vec<Line> = HELP
        .iter()
        .map(|(k, v)| {
            Line::from(vec![
                Span::styled(format!(" {k:<kw$}  "), TITLE),
                Span::raw(v.to_string()),
            ])
        })
        .collect();
    lines.push(Line::raw(""));
    lines.push(Line::raw(
        " Columns: docs/top.md. Red: over a threshold (--hl-*).",
    ));
    let width = lines.iter().map(|l| l.width()).max().unwrap_or(20) as u16 + 3;
    let height = lines.len() as u16 + 2;
    let w = width.min(area.width);
    let h = height.min(area.height);
    let r = Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    };
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" Help ")),
        r,
    );
}

/// Draws one frame; returns the column scroll offset it used (the sort column scrolled
/// into view).
pub fn draw(f: &mut Frame, s: &Screen) -> usize {
    let [head, status, body, foot] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(f.area());
    f.render_widget(Paragraph::new(header_line(s, head.width)), head);
    let hidden = match s.detail {
        Some((_, conns)) => draw_detail(f, s, conns, body),
        None => draw_table(f, s, body),
    };
    f.render_widget(Paragraph::new(status_line(s, s.rows.len(), hidden)), status);
    f.render_widget(Paragraph::new(footer(s, foot.width)), foot);
    if s.ui.help {
        draw_help(f, f.area());
    }
    hidden.offset
}
