//! Filters: the user's ftrace filter applied in the kernel to each event that has every
//! field it names, and the --port/--host selectors (ports in the kernel where the event
//! has sport and dport, and both checked again on every parsed event).

use std::net::IpAddr;

use crate::event::{Event, canonical};
use crate::format::Format;

/// Whether the word starting at `start` is a value (it follows a comparison operator)
/// rather than a field name.
fn after_comparison(filter: &str, start: usize) -> bool {
    let before = filter[..start].trim_end();
    if before.ends_with("&&") || before.ends_with("||") {
        return false;
    }
    before.ends_with(['=', '<', '>', '~', '&'])
}

/// Field names a filter uses: identifiers outside quotes that are not numbers nor the
/// value of a comparison (`comm == bash`).
pub fn identifiers(filter: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let b = filter.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'"' || c == b'\'' {
            i += 1;
            while i < b.len() && b[i] != c {
                i += 1 + (b[i] == b'\\') as usize;
            }
            i += 1;
        } else if c.is_ascii_alphanumeric() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            let word = &filter[start..i];
            if !c.is_ascii_digit()
                && !after_comparison(filter, start)
                && !out.iter().any(|w| w == word)
            {
                out.push(word.to_string());
            }
        } else {
            i += 1;
        }
    }
    out
}

/// The filter to write for one event, or None to leave it unfiltered.
pub fn event_filter(user: Option<&str>, ports: &[u16], fmt: &Format) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(u) = user.map(str::trim).filter(|u| !u.is_empty())
        && identifiers(u).iter().all(|w| fmt.has_field(w))
    {
        parts.push(format!("({u})"));
    }
    if !ports.is_empty() && fmt.has_field("sport") && fmt.has_field("dport") {
        let any: Vec<String> = ports
            .iter()
            .map(|p| format!("sport == {p} || dport == {p}"))
            .collect();
        parts.push(format!("({})", any.join(" || ")));
    }
    (!parts.is_empty()).then(|| parts.join(" && "))
}

/// --port and --host, checked on parsed events (either end matches; several values of
/// one option are alternatives, the two options must both match).
#[derive(Clone, Debug, Default)]
pub struct Selector {
    pub ports: Vec<u16>,
    pub hosts: Vec<IpAddr>,
}

impl Selector {
    pub fn is_empty(&self) -> bool {
        self.ports.is_empty() && self.hosts.is_empty()
    }

    /// Events without readable endpoints pass.
    pub fn matches(&self, e: &Event) -> bool {
        if self.is_empty() {
            return true;
        }
        let Some((l, r)) = e.endpoints() else {
            return true;
        };
        (self.ports.is_empty() || self.ports.contains(&l.port()) || self.ports.contains(&r.port()))
            && (self.hosts.is_empty()
                || self
                    .hosts
                    .iter()
                    .any(|h| canonical(*h) == l.ip() || canonical(*h) == r.ip()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Line, parse_line};
    use crate::format::Formats;

    #[test]
    fn idents() {
        assert_eq!(
            identifiers("sport == 80 || (dport == 0x50 && comm ~ \"ss h\" && x_1 != 'a b')"),
            vec!["sport", "dport", "comm", "x_1"]
        );
        assert!(identifiers("").is_empty());
        assert_eq!(
            identifiers("comm == bash && !(x&1) && y & z"),
            vec!["comm", "x", "y"]
        );
        assert_eq!(identifiers("\"unterminated"), Vec::<String>::new());
    }

    #[test]
    fn per_event() {
        let f = Formats::bundled();
        let probe = f.get("tcp_probe").unwrap();
        let reset = f.get("tcp_send_reset").unwrap();
        assert_eq!(
            event_filter(Some("dport == 80"), &[], probe).as_deref(),
            Some("(dport == 80)")
        );
        assert_eq!(event_filter(Some("dport == 80"), &[], reset), None);
        assert_eq!(
            event_filter(Some("state == 1"), &[443], reset).as_deref(),
            Some("(state == 1)")
        );
        assert_eq!(
            event_filter(Some("srtt > 0"), &[443, 80], probe).as_deref(),
            Some("(srtt > 0) && (sport == 443 || dport == 443 || sport == 80 || dport == 80)")
        );
        assert_eq!(event_filter(None, &[], probe), None);
    }

    #[test]
    fn selector() {
        let Ok(Line::Event(e)) =
            parse_line("x-1 [0] 1.0: tcp_probe: src=127.0.0.1:5000 dest=127.0.0.2:80 srtt=1")
        else {
            panic!()
        };
        let s = |ports: &[u16], hosts: &[&str]| Selector {
            ports: ports.to_vec(),
            hosts: hosts.iter().map(|h| h.parse().unwrap()).collect(),
        };
        assert!(s(&[], &[]).matches(&e));
        assert!(s(&[80], &[]).matches(&e));
        assert!(!s(&[81], &[]).matches(&e));
        assert!(s(&[80], &["::ffff:127.0.0.2"]).matches(&e));
        assert!(!s(&[80], &["127.0.0.3"]).matches(&e));
    }
}
