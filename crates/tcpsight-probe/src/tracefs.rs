//! tracefs and a private tracing instance.
//!
//! Everything is done in `instances/tcpsight-PID`: its own ring buffer, its own event
//! switches and filters, its own `tracing_on`. The top-level files (`set_event`,
//! `buffer_size_kb`, `tracing_on`, `events/*/enable`) are never written, so a tracer
//! already running on the machine is not disturbed and nothing needs restoring. The
//! [`Instance`] guard disables its events and removes the directory when dropped; with
//! [`install_signal_handlers`], SIGINT, SIGTERM and SIGHUP only set a flag that the read
//! loop checks, so the guard still runs on Ctrl-C.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::format::Format;

/// Where tracefs normally lives.
pub const DEFAULT_ROOT: &str = "/sys/kernel/tracing";
const DEBUGFS_ROOT: &str = "/sys/kernel/debug/tracing";

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// SIGINT, SIGTERM and SIGHUP set the stop flag instead of killing the process, so
/// guards are dropped and the instance removed.
pub fn install_signal_handlers() {
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
}

/// Whether a stop signal arrived.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// Asks the loops to stop, as a signal would.
pub fn request_stop() {
    STOP.store(true, Ordering::Relaxed);
}

/// A tracefs mount; unmounted on drop when this process mounted it.
#[derive(Debug)]
pub struct Tracefs {
    pub root: PathBuf,
    mounted_here: bool,
}

fn is_tracefs(p: &Path) -> bool {
    p.join("instances").is_dir() && p.join("events").is_dir()
}

fn mounted_tracefs() -> Option<PathBuf> {
    let text = fs::read_to_string("/proc/self/mounts").ok()?;
    let mut found: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (_, dir, fstype) = (it.next()?, it.next()?, it.next()?);
            (fstype == "tracefs").then(|| PathBuf::from(dir.replace("\\040", " ")))
        })
        .collect();
    found.sort_by_key(|p| p != Path::new(DEFAULT_ROOT));
    found.into_iter().next()
}

/// A mounted tracefs this process cannot use says why.
fn check_access(p: &Path) -> Result<(), String> {
    match fs::read_dir(p.join("instances")) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Err(format!(
            "tracefs at {}: {e} (tracing needs root)",
            p.display()
        )),
        Err(e) => Err(format!(
            "tracefs at {}: instances/: {e} (kernel without tracing instances?)",
            p.display()
        )),
    }
}

impl Tracefs {
    /// Uses `root` when given (it must be a tracefs); otherwise finds the mounted tracefs,
    /// or mounts one at /sys/kernel/tracing.
    pub fn open(root: Option<&Path>) -> Result<Tracefs, String> {
        if let Some(r) = root {
            if is_tracefs(r) {
                return Ok(Tracefs {
                    root: r.to_path_buf(),
                    mounted_here: false,
                });
            }
            return Err(format!(
                "{} is not a tracefs (no instances/ and events/ in it)",
                r.display()
            ));
        }
        if let Some(r) = mounted_tracefs() {
            check_access(&r)?;
            return Ok(Tracefs {
                root: r,
                mounted_here: false,
            });
        }
        for r in [DEFAULT_ROOT, DEBUGFS_ROOT] {
            if is_tracefs(Path::new(r)) {
                return Ok(Tracefs {
                    root: r.into(),
                    mounted_here: false,
                });
            }
        }
        let target = CString::new(DEFAULT_ROOT).expect("no NUL");
        let fstype = CString::new("tracefs").expect("no NUL");
        let source = CString::new("nodev").expect("no NUL");
        // SAFETY: valid NUL-terminated strings; no data argument.
        let rc = unsafe {
            libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            let e = io::Error::last_os_error();
            let hint = if e.raw_os_error() == Some(libc::EPERM) {
                " (needs root)"
            } else {
                ""
            };
            return Err(format!(
                "tracefs is not mounted, and mounting it at {DEFAULT_ROOT} failed: {e}{hint}"
            ));
        }
        if !is_tracefs(Path::new(DEFAULT_ROOT)) {
            return Err(format!(
                "mounted tracefs at {DEFAULT_ROOT} but it has no instances/ (kernel without tracing instances?)"
            ));
        }
        Ok(Tracefs {
            root: DEFAULT_ROOT.into(),
            mounted_here: true,
        })
    }

    pub fn mounted_here(&self) -> bool {
        self.mounted_here
    }

    /// The format of `group/name` (e.g. `tcp/tcp_probe`), or a clear error when the
    /// running kernel does not have that event.
    pub fn format(&self, event: &str) -> Result<Format, String> {
        let dir = self.root.join("events").join(event);
        if !dir.is_dir() {
            return Err(format!(
                "event {} is not available on this kernel (no {})",
                event.replace('/', ":"),
                dir.display()
            ));
        }
        Format::read(&dir.join("format"))
    }
}

impl Drop for Tracefs {
    fn drop(&mut self) {
        if self.mounted_here
            && let Ok(p) = CString::new(self.root.as_os_str().as_encoded_bytes())
        {
            // SAFETY: valid path string.
            unsafe { libc::umount2(p.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// A private tracing instance, removed when dropped.
#[derive(Debug)]
pub struct Instance {
    pub path: PathBuf,
    enabled: Vec<String>,
    pipe: Option<File>,
}

fn write_file(path: &Path, value: &str) -> Result<(), String> {
    let mut f = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(value.as_bytes())
        .map_err(|e| format!("writing {value:?} to {}: {e}", path.display()))
}

fn pid_alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

impl Instance {
    /// Creates `instances/<prefix>-<pid>`. Instances of the same prefix left by a process
    /// that no longer exists (killed with SIGKILL) are removed first.
    pub fn create(tfs: &Tracefs, prefix: &str) -> Result<Instance, String> {
        let dir = tfs.root.join("instances");
        if let Ok(rd) = fs::read_dir(&dir) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if let Some(pid) = name
                    .strip_prefix(prefix)
                    .and_then(|r| r.strip_prefix('-'))
                    .and_then(|p| p.parse::<i32>().ok())
                    && !pid_alive(pid)
                {
                    let mut stale = Instance {
                        path: e.path(),
                        enabled: Vec::new(),
                        pipe: None,
                    };
                    stale.disable_all_events();
                    drop(stale);
                }
            }
        }
        let path = dir.join(format!("{prefix}-{}", std::process::id()));
        if let Err(e) = fs::create_dir(&path) {
            let hint = if e.kind() == io::ErrorKind::PermissionDenied {
                " (tracing needs root)"
            } else {
                ""
            };
            return Err(format!(
                "creating tracing instance {}: {e}{hint}",
                path.display()
            ));
        }
        Ok(Instance {
            path,
            enabled: Vec::new(),
            pipe: None,
        })
    }

    fn disable_all_events(&mut self) {
        let _ = write_file(&self.path.join("events/enable"), "0");
    }

    /// Per-CPU ring size in KB.
    pub fn set_buffer_kb(&self, kb: u64) -> Result<(), String> {
        write_file(&self.path.join("buffer_size_kb"), &kb.to_string())
    }

    /// Sets the filter of `group/name`; an error names the event and the filter.
    pub fn set_filter(&self, event: &str, filter: &str) -> Result<(), String> {
        let p = self.path.join("events").join(event).join("filter");
        write_file(&p, filter).map_err(|e| {
            format!(
                "the kernel rejected filter {filter:?} for {}: {e}",
                event.replace('/', ":")
            )
        })
    }

    pub fn enable(&mut self, event: &str) -> Result<(), String> {
        let p = self.path.join("events").join(event).join("enable");
        if !p.exists() {
            return Err(format!(
                "event {} is not available on this kernel (no {})",
                event.replace('/', ":"),
                p.display()
            ));
        }
        write_file(&p, "1")?;
        self.enabled.push(event.to_string());
        Ok(())
    }

    pub fn set_tracing_on(&self, on: bool) -> Result<(), String> {
        write_file(&self.path.join("tracing_on"), if on { "1" } else { "0" })
    }

    /// Opens the instance's trace_pipe (non-blocking).
    pub fn open_pipe(&mut self) -> Result<(), String> {
        let p = self.path.join("trace_pipe");
        let f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&p)
            .map_err(|e| format!("{}: {e}", p.display()))?;
        self.pipe = Some(f);
        Ok(())
    }

    /// Appends what trace_pipe has to `out`, waiting up to `timeout_ms` for data.
    /// Returns the number of bytes read (0 on timeout or without an open pipe).
    pub fn read_pipe(&mut self, out: &mut Vec<u8>, timeout_ms: i32) -> io::Result<usize> {
        let Some(f) = self.pipe.as_mut() else {
            return Ok(0);
        };
        let mut pfd = libc::pollfd {
            fd: f.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(0)
            } else {
                Err(e)
            };
        }
        let mut buf = [0u8; 1 << 16];
        let mut total = 0;
        loop {
            match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    out.extend_from_slice(&buf[..n]);
                    total += n;
                    if total >= 1 << 20 {
                        break;
                    }
                }
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::Interrupted =>
                {
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(total)
    }

    /// Events the ring dropped (the per-CPU `overrun` counters).
    pub fn overruns(&self) -> u64 {
        let mut total = 0;
        if let Ok(rd) = fs::read_dir(self.path.join("per_cpu")) {
            for cpu in rd.flatten() {
                if let Ok(text) = fs::read_to_string(cpu.path().join("stats")) {
                    for l in text.lines() {
                        if let Some(v) = l.strip_prefix("overrun:") {
                            total += v.trim().parse::<u64>().unwrap_or(0);
                        }
                    }
                }
            }
        }
        total
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.set_tracing_on(false);
        for ev in std::mem::take(&mut self.enabled) {
            let _ = write_file(&self.path.join("events").join(&ev).join("enable"), "0");
        }
        self.disable_all_events();
        self.pipe = None;
        // The kernel refuses while a reader still has the pipe open: retry briefly.
        for _ in 0..50 {
            match fs::remove_dir(&self.path) {
                Ok(()) => return,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return,
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        }
        eprintln!(
            "tcpsight: could not remove tracing instance {}; remove it with rmdir",
            self.path.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_a_tracefs() {
        let d = tempfile::tempdir().unwrap();
        let e = Tracefs::open(Some(d.path())).unwrap_err();
        assert!(e.contains("is not a tracefs"), "{e}");
    }
}
