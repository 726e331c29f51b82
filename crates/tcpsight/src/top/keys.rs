//! Keys: the screen's state machine, independent of the terminal (tests feed it key
//! events and read the state).

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::model::{Key, RowFilter};
use crate::output::table::{COLUMN_SORT, SortBy};

/// What the run loop does after a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    None,
    /// Something on screen changed: draw again.
    Redraw,
    /// Pause was switched on (freeze a copy of the figures) or off.
    Pause(bool),
    /// Forget every counter.
    Reset,
    Quit,
}

/// The screen's state.
#[derive(Clone, Debug)]
pub struct Ui {
    pub sort: SortBy,
    pub reverse: bool,
    pub paused: bool,
    /// Cumulative (since start or reset) instead of the sliding window.
    pub cumulative: bool,
    pub filter: RowFilter,
    /// The `/` prompt's text while it is open.
    pub input: Option<String>,
    /// The last filter's error, shown until the next key.
    pub error: Option<String>,
    /// Selected row of the table (or of the drill-down list).
    pub selected: usize,
    /// The endpoint drilled into, and the table row selected before.
    pub detail: Option<(Key, usize)>,
    pub detail_selected: usize,
    pub help: bool,
    /// Columns scrolled off to the left (after Host, which always shows): `[` and `]`.
    pub col_offset: usize,
    /// The sort column changed: the next draw scrolls it into view.
    pub follow_sort: bool,
}

impl Ui {
    pub fn new(sort: SortBy, reverse: bool, cumulative: bool) -> Ui {
        Ui {
            sort,
            reverse,
            paused: false,
            cumulative,
            filter: RowFilter::default(),
            input: None,
            error: None,
            selected: 0,
            detail: None,
            detail_selected: 0,
            help: false,
            col_offset: 0,
            follow_sort: true,
        }
    }

    /// `<` and `>` walk the table's columns in screen order (COLUMN_SORT), skipping a
    /// column that sorts like the one before it (Syn/s like Syn).
    fn move_sort(&mut self, step: isize) {
        let n = COLUMN_SORT.len() as isize;
        let mut i = COLUMN_SORT
            .iter()
            .position(|s| *s == self.sort)
            .unwrap_or(0) as isize;
        loop {
            i = (i + step).rem_euclid(n);
            let s = COLUMN_SORT[i as usize];
            if s != self.sort && COLUMN_SORT.iter().position(|c| *c == s) == Some(i as usize) {
                self.sort = s;
                self.follow_sort = true;
                return;
            }
        }
    }

    /// Handles one key. `rows` is the number of rows on screen (table or drill-down
    /// list), `keys` the table rows' keys (for Enter), `page` the visible row count.
    pub fn handle(&mut self, ev: KeyEvent, keys: &[Key], rows: usize, page: usize) -> Action {
        let ctrl = ev.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && matches!(ev.code, KeyCode::Char('c')) {
            return Action::Quit;
        }
        self.error = None;
        if let Some(text) = self.input.as_mut() {
            match ev.code {
                KeyCode::Esc => self.input = None,
                KeyCode::Enter => {
                    let text = self.input.take().unwrap_or_default();
                    match RowFilter::parse(&text) {
                        Ok(f) => {
                            self.filter = f;
                            self.selected = 0;
                        }
                        Err(e) => self.error = Some(e),
                    }
                }
                KeyCode::Backspace => {
                    text.pop();
                }
                KeyCode::Char('u') if ctrl => text.clear(),
                KeyCode::Char(c) if !ctrl => text.push(c),
                _ => return Action::None,
            }
            return Action::Redraw;
        }
        if self.help {
            self.help = false;
            return match ev.code {
                KeyCode::Char('q') => Action::Quit,
                _ => Action::Redraw,
            };
        }
        let page = page.max(1);
        let sel = if self.detail.is_some() {
            &mut self.detail_selected
        } else {
            &mut self.selected
        };
        let last = rows.saturating_sub(1);
        match ev.code {
            KeyCode::Char('q') => return Action::Quit,
            KeyCode::Char('?') | KeyCode::Char('h') | KeyCode::F(1) => self.help = true,
            KeyCode::Up | KeyCode::Char('k') => *sel = sel.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => *sel = (*sel + 1).min(last),
            KeyCode::PageUp => *sel = sel.saturating_sub(page),
            KeyCode::PageDown => *sel = (*sel + page).min(last),
            KeyCode::Home | KeyCode::Char('g') => *sel = 0,
            KeyCode::End | KeyCode::Char('G') => *sel = last,
            KeyCode::Char(' ') | KeyCode::Char('p') => {
                self.paused = !self.paused;
                return Action::Pause(self.paused);
            }
            KeyCode::Char('r') => {
                self.selected = 0;
                self.detail_selected = 0;
                return Action::Reset;
            }
            KeyCode::Char('w') => self.cumulative = !self.cumulative,
            // Horizontal scroll (a narrow terminal cannot show every column).
            KeyCode::Char('[') => {
                self.col_offset = self.col_offset.saturating_sub(1);
                self.follow_sort = false;
            }
            KeyCode::Char(']') => {
                self.col_offset = (self.col_offset + 1).min(COLUMN_SORT.len() - 2);
                self.follow_sort = false;
            }
            KeyCode::Esc if self.detail.is_some() => {
                if let Some((_, s)) = self.detail.take() {
                    self.selected = s;
                }
            }
            KeyCode::Esc if !self.filter.is_empty() => self.filter = RowFilter::default(),
            _ if self.detail.is_some() => return Action::None,
            KeyCode::Char('<') | KeyCode::Left => self.move_sort(-1),
            KeyCode::Char('>') | KeyCode::Right => self.move_sort(1),
            KeyCode::Char('i') | KeyCode::Char('I') => self.reverse = !self.reverse,
            KeyCode::Char('/') => {
                self.input = Some(self.filter.text.clone());
            }
            KeyCode::Enter => {
                if let Some(k) = keys.get(self.selected) {
                    self.detail = Some((*k, self.selected));
                    self.detail_selected = 0;
                }
            }
            _ => return Action::None,
        }
        Action::Redraw
    }

    /// Keeps the selection inside the list after the rows changed.
    pub fn clamp(&mut self, rows: usize) {
        let sel = if self.detail.is_some() {
            &mut self.detail_selected
        } else {
            &mut self.selected
        };
        *sel = (*sel).min(rows.saturating_sub(1));
    }
}

/// The help screen's lines.
pub const HELP: &[(&str, &str)] = &[
    ("Up/Down j/k", "select a row (PgUp/PgDn, Home/End g/G)"),
    (
        "< > Left/Right",
        "sort by the previous/next column (scrolled into view)",
    ),
    ("[ ]", "scroll the columns left/right (Host stays)"),
    ("i", "reverse the sort order"),
    ("Space p", "pause: freeze the figures (still scrollable)"),
    ("w", "sliding window / cumulative"),
    ("/", "filter: host:REGEX port:N net:CIDR outcome:NAME"),
    ("Enter", "the endpoint's recent connections"),
    ("Esc", "back (or clear the filter)"),
    ("r", "reset counters"),
    ("?", "this help (any key closes it)"),
    ("q Ctrl-C", "quit (prints the table)"),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    #[test]
    fn sort_walks_and_wraps() {
        let mut ui = Ui::new(SortBy::Syn, false, false);
        assert_eq!(
            ui.handle(key(KeyCode::Char('>')), &[], 0, 10),
            Action::Redraw
        );
        assert_eq!(ui.sort, SortBy::Synack);
        ui.handle(key(KeyCode::Left), &[], 0, 10);
        ui.handle(key(KeyCode::Left), &[], 0, 10);
        assert_eq!(ui.sort, SortBy::Host);
        ui.handle(key(KeyCode::Left), &[], 0, 10);
        assert_eq!(ui.sort, SortBy::Err);
        ui.handle(key(KeyCode::Char('i')), &[], 0, 10);
        assert!(ui.reverse);
    }

    #[test]
    fn filter_prompt_edits_applies_and_reports_errors() {
        let mut ui = Ui::new(SortBy::Syn, false, false);
        ui.handle(key(KeyCode::Char('/')), &[], 0, 10);
        for c in "port:8x".chars() {
            ui.handle(key(KeyCode::Char(c)), &[], 0, 10);
        }
        // q inside the prompt is text, not quit.
        assert_eq!(ui.input.as_deref(), Some("port:8x"));
        ui.handle(key(KeyCode::Backspace), &[], 0, 10);
        ui.handle(key(KeyCode::Char('0')), &[], 0, 10);
        ui.handle(key(KeyCode::Enter), &[], 0, 10);
        assert_eq!(ui.filter.text, "port:80");
        assert!(ui.error.is_none());
        ui.handle(key(KeyCode::Char('/')), &[], 0, 10);
        ui.handle(key(KeyCode::Char('x')), &[], 0, 10);
        ui.handle(key(KeyCode::Enter), &[], 0, 10);
        // A bad filter keeps the previous one.
        let mut ui2 = ui.clone();
        ui2.input = Some("port:abc".into());
        ui2.handle(key(KeyCode::Enter), &[], 0, 10);
        assert!(ui2.error.as_deref().unwrap().contains("not a port"));
        assert_eq!(ui2.filter.text, "port:80");
        ui.handle(key(KeyCode::Esc), &[], 0, 10);
        assert!(ui.filter.is_empty());
    }

    #[test]
    fn enter_drills_esc_returns_pause_and_quit() {
        let k = [Key::Filter(0), Key::Filter(1)];
        let mut ui = Ui::new(SortBy::Syn, false, false);
        ui.handle(key(KeyCode::Down), &k, 2, 10);
        ui.handle(key(KeyCode::Down), &k, 2, 10);
        assert_eq!(ui.selected, 1);
        ui.handle(key(KeyCode::Enter), &k, 2, 10);
        assert_eq!(ui.detail, Some((Key::Filter(1), 1)));
        // Sorting keys do nothing in the drill-down.
        assert_eq!(ui.handle(key(KeyCode::Char('>')), &k, 5, 10), Action::None);
        ui.handle(key(KeyCode::End), &k, 5, 10);
        assert_eq!(ui.detail_selected, 4);
        ui.handle(key(KeyCode::Esc), &k, 2, 10);
        assert_eq!(ui.detail, None);
        assert_eq!(ui.selected, 1);
        assert_eq!(
            ui.handle(key(KeyCode::Char(' ')), &k, 2, 10),
            Action::Pause(true)
        );
        assert_eq!(
            ui.handle(key(KeyCode::Char('p')), &k, 2, 10),
            Action::Pause(false)
        );
        assert_eq!(ui.handle(key(KeyCode::Char('r')), &k, 2, 10), Action::Reset);
        ui.handle(key(KeyCode::Char('?')), &k, 2, 10);
        assert!(ui.help);
        assert_eq!(
            ui.handle(key(KeyCode::Char('x')), &k, 2, 10),
            Action::Redraw
        );
        assert!(!ui.help);
        assert_eq!(ui.handle(key(KeyCode::Char('q')), &k, 2, 10), Action::Quit);
        assert_eq!(
            ui.handle(
                KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL),
                &k,
                2,
                10
            ),
            Action::Quit
        );
    }
}
