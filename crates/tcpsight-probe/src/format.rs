//! An event's `format` file (tracefs `events/GROUP/NAME/format`): its binary fields and
//! the `key=%conv` layout of its text, which says how to type each printed value.
//!
//! Live, the running kernel's files are read; otherwise (a trace from another machine)
//! the formats of kernel 6.18 bundled here are used. Keys neither knows are kept as
//! strings.

use std::collections::HashMap;
use std::path::Path;

/// How a printed value is typed in JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conv {
    /// `%d`, `%u`, `%hu`, `%llu`...
    Int,
    /// `%x`, `%#x`, `%llx`: a number printed in hexadecimal.
    Hex,
    /// `%s`, `%p` and its extensions (addresses, symbolic names).
    Str,
}

/// One `field:TYPE NAME; offset:N; size:N; signed:N;` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub ctype: String,
    pub name: String,
    pub offset: u32,
    pub size: u32,
    pub signed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Format {
    pub name: String,
    pub id: Option<u32>,
    pub fields: Vec<Field>,
    /// The printed keys, in order, with their conversion.
    pub printed: Vec<(String, Conv)>,
}

fn conv_of(spec: &str) -> Conv {
    // spec is what follows '%': flags, width, length, then the conversion letter.
    let letter = spec
        .trim_start_matches(['#', '-', '+', ' ', '0'])
        .trim_start_matches(|c: char| c.is_ascii_digit())
        .trim_start_matches(['l', 'h', 'z', 'j', 't', 'q'])
        .chars()
        .next();
    match letter {
        Some('d' | 'i' | 'u') => Conv::Int,
        Some('x' | 'X') => Conv::Hex,
        _ => Conv::Str,
    }
}

impl Format {
    /// Parses a format file. Errors name the line that is not understood.
    pub fn parse(text: &str) -> Result<Format, String> {
        let mut f = Format {
            name: String::new(),
            id: None,
            fields: Vec::new(),
            printed: Vec::new(),
        };
        for (n, line) in text.lines().enumerate() {
            let t = line.trim();
            if let Some(v) = t.strip_prefix("name:") {
                f.name = v.trim().to_string();
            } else if let Some(v) = t.strip_prefix("ID:") {
                f.id = v.trim().parse().ok();
            } else if t.starts_with("field:") {
                f.fields
                    .push(parse_field(t).ok_or_else(|| format!("line {}: bad field: {t}", n + 1))?);
            } else if let Some(v) = t.strip_prefix("print fmt:") {
                let v = v.trim();
                let Some(body) = v.strip_prefix('"') else {
                    return Err(format!("line {}: print fmt is not quoted", n + 1));
                };
                let end = body.find('"').unwrap_or(body.len());
                for tok in body[..end].split_whitespace() {
                    if let Some((k, rest)) = tok.split_once('=')
                        && let Some(spec) = rest.strip_prefix('%')
                    {
                        f.printed.push((k.to_string(), conv_of(spec)));
                    }
                }
            }
        }
        if f.name.is_empty() {
            return Err("no name: line".to_string());
        }
        Ok(f)
    }

    /// Reads and parses `path` (a format file).
    pub fn read(path: &Path) -> Result<Format, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Format::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn has_field(&self, name: &str) -> bool {
        self.fields.iter().any(|f| f.name == name)
    }

    pub fn conv(&self, key: &str) -> Option<Conv> {
        self.printed.iter().find(|(k, _)| k == key).map(|(_, c)| *c)
    }
}

fn parse_field(t: &str) -> Option<Field> {
    let mut decl = None;
    let (mut offset, mut size, mut signed) = (None, None, false);
    for part in t.split(';') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("field:") {
            decl = Some(v.trim());
        } else if let Some(v) = part.strip_prefix("offset:") {
            offset = v.trim().parse().ok();
        } else if let Some(v) = part.strip_prefix("size:") {
            size = v.trim().parse().ok();
        } else if let Some(v) = part.strip_prefix("signed:") {
            signed = v.trim() == "1";
        }
    }
    let decl = decl?;
    let split = decl.rfind(|c: char| c.is_whitespace() || c == '*')?;
    let (ctype, name) = (decl[..=split].trim(), decl[split + 1..].trim());
    let name = name.split('[').next().unwrap_or(name);
    if name.is_empty() {
        return None;
    }
    Some(Field {
        ctype: ctype.to_string(),
        name: name.to_string(),
        offset: offset?,
        size: size?,
        signed,
    })
}

/// The events `probe trace` records, as GROUP/NAME.
pub const EVENTS: [&str; 6] = [
    "tcp/tcp_probe",
    "tcp/tcp_retransmit_skb",
    "tcp/tcp_retransmit_synack",
    "tcp/tcp_send_reset",
    "tcp/tcp_receive_reset",
    "sock/inet_sock_set_state",
];

const BUNDLED: [&str; 6] = [
    include_str!("../formats/tcp_probe.format"),
    include_str!("../formats/tcp_retransmit_skb.format"),
    include_str!("../formats/tcp_retransmit_synack.format"),
    include_str!("../formats/tcp_send_reset.format"),
    include_str!("../formats/tcp_receive_reset.format"),
    include_str!("../formats/inet_sock_set_state.format"),
];

/// Formats by event name, used to type parsed values.
#[derive(Clone, Debug, Default)]
pub struct Formats {
    by_name: HashMap<String, Format>,
}

impl Formats {
    /// Kernel 6.18's formats of the six recorded events.
    pub fn bundled() -> Formats {
        let mut f = Formats::default();
        for text in BUNDLED {
            if let Ok(fmt) = Format::parse(text) {
                f.by_name.insert(fmt.name.clone(), fmt);
            }
        }
        f
    }

    /// The running kernel's formats from a tracefs root (those it has), over the bundled ones.
    pub fn live(tracefs: &Path) -> Formats {
        let mut f = Formats::bundled();
        for ev in EVENTS {
            if let Ok(fmt) = Format::read(&tracefs.join("events").join(ev).join("format")) {
                f.by_name.insert(fmt.name.clone(), fmt);
            }
        }
        f
    }

    pub fn get(&self, event: &str) -> Option<&Format> {
        self.by_name.get(event)
    }

    /// A printed value, typed by its event's format: numbers for integer conversions
    /// (hexadecimal ones decoded), strings otherwise and for unknown keys.
    pub fn typed(&self, event: &str, key: &str, value: &str) -> serde_json::Value {
        let conv = self.get(event).and_then(|f| f.conv(key));
        let num = match conv {
            Some(Conv::Int) => value
                .parse::<u64>()
                .map(serde_json::Value::from)
                .or_else(|_| value.parse::<i64>().map(serde_json::Value::from))
                .ok(),
            Some(Conv::Hex) => u64::from_str_radix(value.trim_start_matches("0x"), 16)
                .ok()
                .map(serde_json::Value::from),
            _ => None,
        };
        num.unwrap_or_else(|| serde_json::Value::from(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_formats_parse() {
        let f = Formats::bundled();
        let p = f.get("tcp_probe").unwrap();
        assert_eq!(p.id, Some(2273));
        assert!(p.has_field("sport") && p.has_field("srtt") && p.has_field("saddr"));
        let saddr = p.fields.iter().find(|x| x.name == "saddr").unwrap();
        assert_eq!((saddr.offset, saddr.size), (8, 28));
        assert_eq!(p.conv("snd_cwnd"), Some(Conv::Int));
        assert_eq!(p.conv("snd_nxt"), Some(Conv::Hex));
        assert_eq!(p.conv("sock_cookie"), Some(Conv::Hex));
        assert_eq!(p.conv("src"), Some(Conv::Str));
        assert_eq!(p.conv("skbaddr"), Some(Conv::Str));
        let r = f.get("tcp_send_reset").unwrap();
        assert!(!r.has_field("sport"));
        let s = f.get("inet_sock_set_state").unwrap();
        assert_eq!(s.conv("sport"), Some(Conv::Int));
        assert_eq!(s.conv("newstate"), Some(Conv::Str));
        assert!(f.get("tcp_retransmit_skb").unwrap().has_field("err"));
    }

    #[test]
    fn typing() {
        let f = Formats::bundled();
        assert_eq!(
            f.typed("tcp_probe", "snd_cwnd", "10"),
            serde_json::json!(10)
        );
        assert_eq!(
            f.typed("tcp_probe", "snd_nxt", "0xc2d610b2"),
            serde_json::json!(0xc2d610b2u64)
        );
        assert_eq!(
            f.typed("tcp_probe", "sock_cookie", "1f"),
            serde_json::json!(31)
        );
        assert_eq!(
            f.typed("tcp_retransmit_skb", "err", "-11"),
            serde_json::json!(-11)
        );
        assert_eq!(
            f.typed("tcp_probe", "snd_cwnd", "x"),
            serde_json::json!("x")
        );
        assert_eq!(f.typed("tcp_probe", "new_key", "7"), serde_json::json!("7"));
        assert_eq!(f.typed("other", "a", "7"), serde_json::json!("7"));
    }

    #[test]
    fn bad_format() {
        assert!(Format::parse("ID: 3\n").is_err());
        assert!(Format::parse("name: x\n\tfield:int;\toffset:0;\n").is_err());
        assert!(Format::parse("name: x\nprint fmt: x=%d\n").is_err());
    }
}
