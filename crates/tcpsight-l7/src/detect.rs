//! Application protocol identification from the first payload bytes (never the port).

use crate::http::{plausible_request, plausible_response};

/// The application protocol of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum AppProto {
    Http,
    Tls,
    Ssh,
    Smtp,
    Imap,
    Pop3,
    Ftp,
    Dns,
    Redis,
    Mysql,
    Postgresql,
    Mqtt,
    Rdp,
    Smb,
    #[default]
    Unknown,
}

impl AppProto {
    pub fn name(self) -> &'static str {
        match self {
            AppProto::Http => "http",
            AppProto::Tls => "tls",
            AppProto::Ssh => "ssh",
            AppProto::Smtp => "smtp",
            AppProto::Imap => "imap",
            AppProto::Pop3 => "pop3",
            AppProto::Ftp => "ftp",
            AppProto::Dns => "dns",
            AppProto::Redis => "redis",
            AppProto::Mysql => "mysql",
            AppProto::Postgresql => "postgresql",
            AppProto::Mqtt => "mqtt",
            AppProto::Rdp => "rdp",
            AppProto::Smb => "smb",
            AppProto::Unknown => "unknown",
        }
    }

    pub const ALL: [AppProto; 15] = [
        AppProto::Http,
        AppProto::Tls,
        AppProto::Ssh,
        AppProto::Smtp,
        AppProto::Imap,
        AppProto::Pop3,
        AppProto::Ftp,
        AppProto::Dns,
        AppProto::Redis,
        AppProto::Mysql,
        AppProto::Postgresql,
        AppProto::Mqtt,
        AppProto::Rdp,
        AppProto::Smb,
        AppProto::Unknown,
    ];
}

/// One rule's verdict on the bytes seen so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum V {
    Yes,
    Maybe,
    No,
}

fn from_opt(o: Option<bool>) -> V {
    match o {
        Some(true) => V::Yes,
        Some(false) => V::No,
        None => V::Maybe,
    }
}

/// `b` starts with `p` (Yes), is a prefix of it (Maybe), or neither (No).
fn prefix(b: &[u8], p: &[u8]) -> V {
    if b.len() >= p.len() {
        if &b[..p.len()] == p { V::Yes } else { V::No }
    } else if p.starts_with(b) {
        V::Maybe
    } else {
        V::No
    }
}

fn prefix_ci(b: &[u8], p: &[u8]) -> V {
    let n = b.len().min(p.len());
    if !b[..n].eq_ignore_ascii_case(&p[..n]) {
        V::No
    } else if n == p.len() {
        V::Yes
    } else {
        V::Maybe
    }
}

/// A TLS handshake record carrying handshake type `hs_type` (1 ClientHello, 2
/// ServerHello): 0x16, 0x03, minor <= 4, length 4..=18432, then the type.
fn tls_record(b: &[u8], hs_type: u8) -> V {
    let want: [Option<&dyn Fn(u8) -> bool>; 6] = [
        Some(&|x| x == 0x16),
        Some(&|x| x == 0x03),
        Some(&|x| x <= 4),
        None,
        None,
        Some(&|x| x == hs_type),
    ];
    for (i, w) in want.iter().enumerate() {
        let Some(&x) = b.get(i) else { return V::Maybe };
        if let Some(w) = w
            && !w(x)
        {
            return V::No;
        }
    }
    let len = u16::from_be_bytes([b[3], b[4]]);
    if (4..=18432).contains(&len) {
        V::Yes
    } else {
        V::No
    }
}

/// Redis RESP array of bulk strings: "*<1-5 digits>\r\n$".
fn redis(b: &[u8]) -> V {
    if b.is_empty() {
        return V::Maybe;
    }
    if b[0] != b'*' {
        return V::No;
    }
    let digits = b[1..].iter().take_while(|c| c.is_ascii_digit()).count();
    if digits > 5 {
        return V::No;
    }
    let rest = &b[1 + digits..];
    if rest.is_empty() {
        return V::Maybe;
    }
    if digits == 0 {
        return V::No;
    }
    prefix(rest, b"\r\n$")
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// PostgreSQL StartupMessage (protocol 3.0) or SSLRequest/GSSENCRequest/CancelRequest.
fn postgres(b: &[u8]) -> V {
    if b.len() < 8 {
        // Lengths are small: the first two bytes are zero.
        return if b.iter().take(2).all(|&x| x == 0) {
            V::Maybe
        } else {
            V::No
        };
    }
    let (len, code) = (be32(b), be32(&b[4..]));
    match code {
        80877103 | 80877104 if len == 8 => V::Yes,
        80877102 if len == 16 => V::Yes,
        196608 if (8..=10_000).contains(&len) => V::Yes,
        _ => V::No,
    }
}

/// MQTT CONNECT: 0x10, remaining length (1-4 bytes), protocol name "MQTT" or "MQIsdp".
fn mqtt(b: &[u8]) -> V {
    let Some(&first) = b.first() else {
        return V::Maybe;
    };
    if first != 0x10 {
        return V::No;
    }
    let mut i = 1;
    loop {
        let Some(&x) = b.get(i) else { return V::Maybe };
        i += 1;
        if x & 0x80 == 0 {
            break;
        }
        if i > 4 {
            return V::No;
        }
    }
    let rest = &b[i..];
    match (
        prefix(rest, b"\x00\x04MQTT"),
        prefix(rest, b"\x00\x06MQIsdp"),
    ) {
        (V::Yes, _) | (_, V::Yes) => V::Yes,
        (V::Maybe, _) | (_, V::Maybe) => V::Maybe,
        _ => V::No,
    }
}

/// RDP: TPKT (0x03 0x00, length >= 11) then an X.224 TPDU with code `tpdu` (0xE0
/// connection request from the client, 0xD0 connection confirm from the server).
fn rdp(b: &[u8], tpdu: u8) -> V {
    match prefix(b, b"\x03\x00") {
        V::Yes => {}
        v => return v,
    }
    if b.len() < 6 {
        return V::Maybe;
    }
    let len = u16::from_be_bytes([b[2], b[3]]);
    if len >= 11 && b[4] as u16 + 5 <= len && b[5] & 0xf0 == tpdu {
        V::Yes
    } else {
        V::No
    }
}

/// SMB1/SMB2/SMB3-transform header after a NetBIOS session message header.
fn smb(b: &[u8]) -> V {
    let Some(&t) = b.first() else { return V::Maybe };
    if t != 0 {
        return V::No;
    }
    if b.len() < 5 {
        return V::Maybe;
    }
    let rest = &b[4..];
    for p in [b"\xffSMB", b"\xfeSMB", b"\xfdSMB"] {
        match prefix(rest, p) {
            V::No => continue,
            v => return v,
        }
    }
    V::No
}

/// MySQL initial handshake (protocol 10): 3-byte length, sequence 0, 0x0a, then a
/// NUL-terminated server version inside the packet.
fn mysql(b: &[u8]) -> V {
    if b.len() < 5 {
        return if b.len() > 3 && b[3] != 0 {
            V::No
        } else {
            V::Maybe
        };
    }
    let len = u32::from_le_bytes([b[0], b[1], b[2], 0]) as usize;
    if b[3] != 0 || b[4] != 0x0a || !(20..=1024).contains(&len) {
        return V::No;
    }
    let body = &b[5..b.len().min(4 + len)];
    match body.iter().position(|&c| c == 0) {
        Some(p) if p > 0 && body[..p].iter().all(|c| c.is_ascii_graphic()) => V::Yes,
        Some(_) => V::No,
        None if b.len() >= 4 + len => V::No,
        None => V::Maybe,
    }
}

/// DNS over TCP: a 2-byte length (12..=65535), then a message whose header and
/// questions parse, with QR = `response` and opcode <= 6, at least one question.
fn dns(b: &[u8], response: bool) -> V {
    if b.len() < 2 {
        return V::Maybe;
    }
    let len = u16::from_be_bytes([b[0], b[1]]) as usize;
    if len < 12 {
        return V::No;
    }
    if b.len() < 2 + len {
        if len > super::DETECT_MAX - 2 {
            return V::No;
        }
        // The header alone already rules out most binary protocols.
        if b.len() >= 6 {
            let flags = u16::from_be_bytes([b[4], b[5]]);
            if (flags & 0x8000 != 0) != response || (flags >> 11) & 0xf > 6 {
                return V::No;
            }
        }
        return V::Maybe;
    }
    match crate::dns::parse_message(&b[2..2 + len]) {
        Ok(m) if m.response == response && m.opcode <= 6 && !m.questions.is_empty() => V::Yes,
        _ => V::No,
    }
}

const SMTP_CLIENT: [&[u8]; 2] = [b"EHLO", b"HELO"];
const FTP_CLIENT: [&[u8]; 6] = [b"USER", b"AUTH", b"FEAT", b"SYST", b"OPTS", b"PASS"];

fn any_ci(b: &[u8], words: &[&[u8]]) -> V {
    let mut best = V::No;
    for w in words {
        match prefix_ci(b, w) {
            V::Yes => return V::Yes,
            V::Maybe => best = V::Maybe,
            V::No => {}
        }
    }
    best
}

fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// The outcome of detection so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detect {
    Found(AppProto),
    /// Not decided: more bytes (of either direction) may decide.
    More,
}

/// Client-side rules in order; the first Yes wins.
fn client_rules(c: &[u8]) -> (Option<AppProto>, bool) {
    let rules: [(AppProto, V); 10] = [
        (AppProto::Http, from_opt(plausible_request(c))),
        (AppProto::Tls, tls_record(c, 1)),
        (AppProto::Ssh, prefix(c, b"SSH-")),
        (AppProto::Redis, redis(c)),
        (AppProto::Postgresql, postgres(c)),
        (AppProto::Mqtt, mqtt(c)),
        (AppProto::Rdp, rdp(c, 0xe0)),
        (AppProto::Smb, smb(c)),
        (AppProto::Dns, dns(c, false)),
        (AppProto::Unknown, V::No),
    ];
    first_yes(&rules)
}

fn first_yes(rules: &[(AppProto, V)]) -> (Option<AppProto>, bool) {
    let mut maybe = false;
    for &(p, v) in rules {
        match v {
            V::Yes => return (Some(p), true),
            V::Maybe => maybe = true,
            V::No => {}
        }
    }
    (None, maybe)
}

/// Server-side rules except the "220" banner (SMTP/FTP), which needs the client too.
fn server_rules(s: &[u8]) -> (Option<AppProto>, bool) {
    let rules: [(AppProto, V); 10] = [
        (AppProto::Http, from_opt(plausible_response(s))),
        (AppProto::Tls, tls_record(s, 2)),
        (AppProto::Ssh, prefix(s, b"SSH-")),
        (AppProto::Imap, prefix(s, b"* OK")),
        (AppProto::Imap, prefix(s, b"* PREAUTH")),
        (AppProto::Pop3, prefix(s, b"+OK")),
        (AppProto::Mysql, mysql(s)),
        (AppProto::Rdp, rdp(s, 0xd0)),
        (AppProto::Smb, smb(s)),
        (AppProto::Dns, dns(s, true)),
    ];
    first_yes(&rules)
}

/// "220" then a space or '-': an SMTP or FTP greeting.
fn banner_220(s: &[u8]) -> V {
    match prefix(s, b"220") {
        V::Yes => match s.get(3) {
            None => V::Maybe,
            Some(b' ' | b'-') => V::Yes,
            Some(_) => V::No,
        },
        v => v,
    }
}

/// Decides from the first bytes of each direction. `client_first`: the client's first
/// byte came before the server's. `end`: no more bytes will come (decide with what
/// is there). `full`: a direction's prefix buffer is full (its Maybes become No).
pub fn detect(c: &[u8], s: &[u8], client_first: bool, end: bool) -> Detect {
    let (cp, cmaybe) = if c.is_empty() {
        (None, true)
    } else {
        client_rules(c)
    };
    let (sp, smaybe) = if s.is_empty() {
        (None, true)
    } else {
        server_rules(s)
    };
    // SMTP vs FTP: both greet with "220". The client's first command decides (EHLO/HELO
    // is SMTP; USER/AUTH/FEAT/SYST/OPTS/PASS is FTP); without one, the banner's text
    // ("SMTP" or "FTP" in it) decides at the end.
    let b220 = if s.is_empty() {
        V::Maybe
    } else {
        banner_220(s)
    };
    let mut smtp_ftp = None;
    let mut smtp_ftp_maybe = b220 != V::No;
    if b220 == V::Yes {
        let line_end = s.iter().position(|&x| x == b'\n').unwrap_or(s.len());
        let banner = &s[..line_end];
        let by_banner = if contains_ci(banner, b"SMTP") {
            Some(AppProto::Smtp)
        } else if contains_ci(banner, b"FTP") {
            Some(AppProto::Ftp)
        } else {
            None
        };
        match (any_ci(c, &SMTP_CLIENT), any_ci(c, &FTP_CLIENT)) {
            (V::Yes, _) => smtp_ftp = Some(AppProto::Smtp),
            (_, V::Yes) => smtp_ftp = Some(AppProto::Ftp),
            (V::No, V::No) if !c.is_empty() => {
                smtp_ftp = by_banner;
                smtp_ftp_maybe = false;
            }
            _ => {
                if end {
                    smtp_ftp = by_banner;
                }
            }
        }
    }
    // Whoever spoke first is believed first.
    let order = if client_first { [cp, sp] } else { [sp, cp] };
    if let Some(p) = order.into_iter().flatten().next() {
        return Detect::Found(p);
    }
    if let Some(p) = smtp_ftp {
        return Detect::Found(p);
    }
    if end || !(cmaybe || smaybe || smtp_ftp_maybe) {
        return Detect::Found(AppProto::Unknown);
    }
    Detect::More
}
