//! The stats socket of a live `watch`, and `tcpsight stat`, its client.
//!
//! Protocol: newline-delimited JSON over a UNIX stream socket. Each request line is
//! `{"cmd":"get"}` (cumulative totals) or `{"cmd":"delta"}` (the change since the
//! previous delta request from any client, tcpeek's REFRESH); tcpeek's plain `GET` and
//! `REFRESH` lines are accepted too. Each reply is one line:
//! `{"filters":[{"filter":..,"success":{..},"failure":{..},"pending":..}],"capture":{..}}`,
//! or `{"error":"..."}` for a request it does not understand (the connection stays open).
//! Several clients may be connected at once.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

pub const DEFAULT_SOCKET: &str = "/run/tcpsight/tcpsight.sock";

pub use tcpsight_agg::Totals;

/// What the socket serves, updated by the watcher.
#[derive(Default)]
pub struct Shared {
    pub names: Vec<String>,
    pub totals: Vec<Totals>,
    pub frames: u64,
    pub tcp_packets: u64,
    pub kernel_drops: u64,
    /// Kernel drops already announced on stderr, and when.
    pub drops_announced: u64,
    pub announced_at: Option<std::time::Instant>,
    last_delta: Option<(Vec<Totals>, u64, u64, u64)>,
}

impl Shared {
    fn reply(&mut self, delta: bool) -> Value {
        let (totals, frames, tcp, drops) = if delta {
            let prev = self
                .last_delta
                .take()
                .unwrap_or_else(|| (vec![Totals::default(); self.totals.len()], 0, 0, 0));
            let t: Vec<Totals> = self
                .totals
                .iter()
                .zip(prev.0.iter().chain(std::iter::repeat(&Totals::default())))
                .map(|(a, b)| a.minus(b))
                .collect();
            let out = (
                t,
                self.frames - prev.1.min(self.frames),
                self.tcp_packets - prev.2.min(self.tcp_packets),
                self.kernel_drops - prev.3.min(self.kernel_drops),
            );
            self.last_delta = Some((
                self.totals.clone(),
                self.frames,
                self.tcp_packets,
                self.kernel_drops,
            ));
            out
        } else {
            (
                self.totals.clone(),
                self.frames,
                self.tcp_packets,
                self.kernel_drops,
            )
        };
        let filters: Vec<Value> = self
            .names
            .iter()
            .zip(&totals)
            .map(|(n, t)| t.to_json(n))
            .collect();
        json!({"filters": filters, "capture": {"frames": frames, "tcp_packets": tcp, "kernel_drops": drops}, "delta": delta})
    }
}

pub type SharedStats = Arc<Mutex<Shared>>;

/// Removes the socket file when the watch ends.
pub struct SocketGuard {
    path: PathBuf,
    /// The directory made for the socket (the default's /run/tcpsight), if it was.
    made_dir: Option<PathBuf>,
    /// Privileges dropped to this user: removing the socket may fail, and is said.
    user: Option<String>,
}

impl SocketGuard {
    /// Before privileges drop to `user`: the socket (and the directory made for it) go
    /// to that user, so it can still remove the socket when it stops. A directory that
    /// was there before is not changed: where `user` cannot write to it, the socket is
    /// left behind (said at the end; the next watch replaces a stale socket).
    pub fn give_to(&mut self, user: &str) -> Result<(), String> {
        if let Some(dir) = &self.made_dir {
            tcpsight_live::give_to(dir, user)?;
        }
        tcpsight_live::give_to(&self.path, user)?;
        self.user = Some(user.to_string());
        Ok(())
    }
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!(
                "tcpsight: {}: cannot remove the stats socket{}: {e} (the next watch replaces it)",
                self.path.display(),
                self.user
                    .as_deref()
                    .map(|u| format!(" as {u}"))
                    .unwrap_or_default()
            );
        }
    }
}

/// Binds the socket (mode 0660; a stale socket file is replaced only if nobody listens
/// on it) and serves it from a background thread.
pub fn serve(path: &Path, shared: SharedStats) -> Result<SocketGuard, String> {
    let mut made_dir = None;
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
        && !dir.exists()
    {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        made_dir = Some(dir.to_path_buf());
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(format!(
                "{}: another tcpsight watch is listening on this socket: give this one \
                 its own with -U PATH (and `tcpsight stat -U PATH` to read it)",
                path.display()
            ));
        }
        std::fs::remove_file(path)
            .map_err(|e| format!("{}: cannot replace the stale socket: {e}", path.display()))?;
    }
    let listener = UnixListener::bind(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660));
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let shared = shared.clone();
            std::thread::spawn(move || client(conn, shared));
        }
    });
    Ok(SocketGuard {
        path: path.to_path_buf(),
        made_dir,
        user: None,
    })
}

fn client(conn: UnixStream, shared: SharedStats) {
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let reader = BufReader::new(conn);
    for line in reader.lines() {
        let Ok(line) = line else { return };
        let req = line.trim();
        if req.is_empty() {
            continue;
        }
        let delta = match req {
            "GET" => Some(false),
            "REFRESH" => Some(true),
            _ => match serde_json::from_str::<Value>(req)
                .ok()
                .and_then(|v| v["cmd"].as_str().map(str::to_string))
            {
                Some(c) if c == "get" => Some(false),
                Some(c) if c == "delta" => Some(true),
                _ => None,
            },
        };
        let reply = match delta {
            Some(d) => match shared.lock() {
                Ok(mut g) => g.reply(d),
                Err(_) => json!({"error": "internal error"}),
            },
            None => {
                json!({"error": format!("unknown request {req:?}: send {{\"cmd\":\"get\"}} or {{\"cmd\":\"delta\"}}")})
            }
        };
        if writeln!(out, "{reply}").is_err() {
            return;
        }
    }
}

/// `tcpsight stat`: asks a running watch for its totals.
#[derive(clap::Args)]
pub struct StatArgs {
    /// The watch's socket
    #[arg(short = 'U', long = "socket", default_value = DEFAULT_SOCKET, value_name = "PATH")]
    socket: PathBuf,
    /// The change since the previous --delta request instead of cumulative totals
    #[arg(long)]
    delta: bool,
    /// Print the reply as JSON
    #[arg(long)]
    json: bool,
    /// Print the totals in the Prometheus text format, for node_exporter's textfile
    /// collector (tcpeekstat -g's job): `tcpsight stat --prometheus > DIR/tcpsight.prom`
    #[arg(long, conflicts_with_all = ["json", "delta"])]
    prometheus: bool,
}

/// A label value in the Prometheus text format.
fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One series of a family: its outcome label (empty: none), and where the reply holds
/// its value (group, key).
type Series = (&'static str, &'static str, &'static str);

/// A watch's totals (the socket's `get` reply) in the Prometheus text format.
pub fn prometheus_text(v: &Value) -> String {
    let mut out = String::new();
    let families: [(&str, &str, &[Series]); 3] = [
        (
            "tcpsight_watch_handshakes_total",
            "Handshakes decided, per watch filter and outcome (tcpeek's success and failure kinds)",
            &[
                ("success", "success", "total"),
                ("timeout", "failure", "timeout"),
                ("reject", "failure", "reject"),
                ("unreach", "failure", "unreach"),
            ],
        ),
        (
            "tcpsight_watch_duplicate_syn_total",
            "Successful handshakes whose SYN was sent more than once, per watch filter",
            &[("", "success", "dupsyn")],
        ),
        (
            "tcpsight_watch_duplicate_synack_total",
            "Successful handshakes whose SYN/ACK was sent more than once, per watch filter",
            &[("", "success", "dupsynack")],
        ),
    ];
    for (name, help, series) in families {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
        for f in v["filters"].as_array().into_iter().flatten() {
            let filter = label_value(f["filter"].as_str().unwrap_or(""));
            for (outcome, group, key) in series {
                let n = f[*group][*key].as_u64().unwrap_or(0);
                if outcome.is_empty() {
                    out.push_str(&format!("{name}{{filter=\"{filter}\"}} {n}\n"));
                } else {
                    out.push_str(&format!(
                        "{name}{{filter=\"{filter}\",outcome=\"{outcome}\"}} {n}\n"
                    ));
                }
            }
        }
    }
    let c = &v["capture"];
    for (key, name, help) in [
        (
            "frames",
            "tcpsight_watch_frames_total",
            "Frames the watch read",
        ),
        (
            "tcp_packets",
            "tcpsight_watch_tcp_packets_total",
            "TCP packets the watch analysed",
        ),
        (
            "kernel_drops",
            "tcpsight_watch_kernel_drops_total",
            "Packets the kernel dropped (ring full)",
        ),
    ] {
        let n = c[key].as_u64().unwrap_or(0);
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {n}\n"
        ));
    }
    out
}

pub fn stat(args: StatArgs) -> std::process::ExitCode {
    let fail = |m: String| {
        eprintln!("tcpsight: {m}");
        std::process::ExitCode::from(2)
    };
    let mut s = match UnixStream::connect(&args.socket) {
        Ok(s) => s,
        Err(e) => {
            return fail(format!(
                "{}: {e} (is `tcpsight watch -i` running?)",
                args.socket.display()
            ));
        }
    };
    let req = if args.delta {
        "{\"cmd\":\"delta\"}\n"
    } else {
        "{\"cmd\":\"get\"}\n"
    };
    if let Err(e) = s.write_all(req.as_bytes()) {
        return fail(format!("{}: {e}", args.socket.display()));
    }
    let mut line = String::new();
    if BufReader::new(&s).read_line(&mut line).is_err() || line.is_empty() {
        return fail(format!("{}: no reply", args.socket.display()));
    }
    let Ok(v) = serde_json::from_str::<Value>(&line) else {
        return fail(format!("{}: malformed reply", args.socket.display()));
    };
    if args.json {
        println!("{v}");
        return std::process::ExitCode::SUCCESS;
    }
    if args.prometheus {
        print!("{}", prometheus_text(&v));
        return std::process::ExitCode::SUCCESS;
    }
    println!(
        "====== TCPSIGHT {} ======",
        if args.delta { "DELTA" } else { "TOTALS" }
    );
    for f in v["filters"].as_array().into_iter().flatten() {
        println!(" {}", f["filter"].as_str().unwrap_or("?"));
        println!(
            "   success {:>10}   dup SYN {:>8}   dup S/A {:>8}",
            f["success"]["total"], f["success"]["dupsyn"], f["success"]["dupsynack"]
        );
        println!(
            "   failure {:>10}   timeout {:>8}   reject {:>9}   unreach {:>8}",
            f["failure"]["total"],
            f["failure"]["timeout"],
            f["failure"]["reject"],
            f["failure"]["unreach"]
        );
    }
    let c = &v["capture"];
    println!(
        " capture: {} frames, {} TCP packets, kernel drops {}",
        c["frames"], c["tcp_packets"], c["kernel_drops"]
    );
    std::process::ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 15: a second watch on a socket in use is told how to run beside it.
    #[test]
    fn a_second_watch_on_the_same_socket_is_told_to_use_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let _first = serve(&path, Default::default()).unwrap();
        let Err(e) = serve(&path, Default::default()) else {
            panic!("a second listener on the same socket")
        };
        assert!(e.contains("-U PATH"), "{e}");
    }
}
