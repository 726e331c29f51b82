//! tcpdump-syntax filters: compiled to classic BPF by libpcap, loaded at run time.
//!
//! Why libpcap: its filter language is what users know (`tcp port 80 and host 10.0.0.1`),
//! and no pure-Rust crate compiles all of it. Why at run time (dlopen): the default build
//! must link no system library, and only users of such filters need libpcap. When it is
//! missing, the error names the package to install; everything else works without it.
//!
//! A [`Program`] is plain cBPF: it can be attached to a socket in the kernel
//! (`SO_ATTACH_FILTER`, see `tcpsight-live`) or run in user space on frames read from
//! files ([`Program::matches`], libpcap's own interpreter, so both agree exactly).

use std::ffi::{CStr, CString, c_char, c_int, c_uint, c_void};
use std::sync::OnceLock;

/// One cBPF instruction: `struct bpf_insn` (= the kernel's `struct sock_filter`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// `BPF_RET | BPF_K`: return a constant (the number of bytes to keep; 0 = drop).
const BPF_RET_K: u16 = 0x06;

/// A compiled filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    pub insns: Vec<Insn>,
}

/// What libpcap returns for a packet a filter accepts, and what we pass as its snap length.
const MAX_SNAPLEN: u32 = 262_144;

#[repr(C)]
struct BpfProgram {
    bf_len: c_uint,
    bf_insns: *mut Insn,
}

type OpenDead = unsafe extern "C" fn(c_int, c_int) -> *mut c_void;
type Compile =
    unsafe extern "C" fn(*mut c_void, *mut BpfProgram, *const c_char, c_int, u32) -> c_int;
type FreeCode = unsafe extern "C" fn(*mut BpfProgram);
type GetErr = unsafe extern "C" fn(*mut c_void) -> *mut c_char;
type Close = unsafe extern "C" fn(*mut c_void);
type Filter = unsafe extern "C" fn(*const Insn, *const u8, c_uint, c_uint) -> c_uint;

struct Libpcap {
    open_dead: OpenDead,
    compile: Compile,
    freecode: FreeCode,
    geterr: GetErr,
    close: Close,
    filter: Filter,
    /// Kept loaded for the life of the process: the function pointers above point into it.
    _lib: libloading::Library,
}

/// Environment variable naming the libpcap to load instead of the usual sonames (tests
/// use it to check the error when the library is missing).
pub const LIBPCAP_ENV: &str = "TCPSIGHT_LIBPCAP";

const SONAMES: [&str; 3] = ["libpcap.so.0.8", "libpcap.so.1", "libpcap.so"];

fn load() -> Result<Libpcap, String> {
    let names: Vec<String> = match std::env::var(LIBPCAP_ENV) {
        Ok(p) if !p.is_empty() => vec![p],
        _ => SONAMES.iter().map(|s| s.to_string()).collect(),
    };
    let mut last = String::new();
    for name in &names {
        // SAFETY: loading libpcap runs its (trivial) initialisers; nothing else runs.
        match unsafe { libloading::Library::new(name) } {
            Ok(lib) => {
                // SAFETY: the symbol types match libpcap's documented prototypes.
                unsafe {
                    let sym = |n: &[u8]| -> Result<*mut c_void, String> {
                        lib.get::<*mut c_void>(n)
                            .map(|s| *s)
                            .map_err(|e| format!("{name}: {e}"))
                    };
                    let p = Libpcap {
                        open_dead: std::mem::transmute::<*mut c_void, OpenDead>(sym(
                            b"pcap_open_dead\0",
                        )?),
                        compile: std::mem::transmute::<*mut c_void, Compile>(sym(
                            b"pcap_compile\0",
                        )?),
                        freecode: std::mem::transmute::<*mut c_void, FreeCode>(sym(
                            b"pcap_freecode\0",
                        )?),
                        geterr: std::mem::transmute::<*mut c_void, GetErr>(sym(b"pcap_geterr\0")?),
                        close: std::mem::transmute::<*mut c_void, Close>(sym(b"pcap_close\0")?),
                        filter: std::mem::transmute::<*mut c_void, Filter>(sym(b"bpf_filter\0")?),
                        _lib: lib,
                    };
                    return Ok(p);
                }
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err(format!(
        "tcpdump-syntax filters need libpcap at run time, and it was not found ({last}): \
         install the package libpcap0.8 (Debian/Ubuntu) or libpcap (Fedora, Arch, Alpine)"
    ))
}

fn libpcap() -> Result<&'static Libpcap, String> {
    static LIB: OnceLock<Result<Libpcap, String>> = OnceLock::new();
    LIB.get_or_init(load).as_ref().map_err(|e| e.clone())
}

/// libpcap's DLT_* value for a pcap LINKTYPE_* value, where they differ on Linux.
fn dlt(linktype: u32) -> u32 {
    match linktype {
        101 => 12, // LINKTYPE_RAW -> DLT_RAW
        l => l,
    }
}

impl Program {
    /// Compiles `expr` for frames of `linktype` (a pcap LINKTYPE_* value); accepted
    /// frames are kept whole up to `snaplen` bytes (what the kernel keeps when the
    /// program is attached to a socket).
    pub fn compile(expr: &str, linktype: u32, snaplen: u32) -> Result<Program, String> {
        let lib = libpcap()?;
        let c_expr =
            CString::new(expr).map_err(|_| format!("filter {expr:?}: contains a NUL byte"))?;
        let linktype = dlt(linktype);
        // SAFETY: a dead handle is only used to compile; every resource is released.
        unsafe {
            let p = (lib.open_dead)(linktype as c_int, snaplen.clamp(1, MAX_SNAPLEN) as c_int);
            if p.is_null() {
                return Err(format!("libpcap cannot handle link type {linktype}"));
            }
            let mut prog = BpfProgram {
                bf_len: 0,
                bf_insns: std::ptr::null_mut(),
            };
            // PCAP_NETMASK_UNKNOWN: only `ip broadcast` needs the netmask.
            let r = (lib.compile)(p, &mut prog, c_expr.as_ptr(), 1, 0xffff_ffff);
            if r != 0 {
                let msg = CStr::from_ptr((lib.geterr)(p))
                    .to_string_lossy()
                    .into_owned();
                (lib.close)(p);
                return Err(format!("filter {expr:?}: {msg}"));
            }
            let insns = std::slice::from_raw_parts(prog.bf_insns, prog.bf_len as usize).to_vec();
            (lib.freecode)(&mut prog);
            (lib.close)(p);
            Ok(Program { insns })
        }
    }

    /// A program that accepts every packet, keeping `snaplen` bytes (a snap length for a
    /// socket without a filter expression).
    pub fn accept_all(snaplen: u32) -> Program {
        Program {
            insns: vec![Insn {
                code: BPF_RET_K,
                jt: 0,
                jf: 0,
                k: snaplen,
            }],
        }
    }

    /// Does the filter accept this frame? `data` is what was captured, `wire_len` the
    /// frame's length on the wire. Runs libpcap's interpreter.
    pub fn matches(&self, data: &[u8], wire_len: u32) -> bool {
        let Ok(lib) = libpcap() else {
            return false;
        };
        if self.insns.is_empty() {
            return false;
        }
        // SAFETY: the program came from pcap_compile (validated) or accept_all; bpf_filter
        // checks every load against `buflen`.
        unsafe {
            (lib.filter)(
                self.insns.as_ptr(),
                data.as_ptr(),
                wire_len.max(data.len() as u32),
                data.len() as c_uint,
            ) != 0
        }
    }
}

/// One filter expression applied to frames of several link types (files may mix them):
/// compiled once per link type, on first use.
#[derive(Debug)]
pub struct LinkFilter {
    expr: String,
    compiled: Vec<(u32, Result<Program, String>)>,
    /// Frames rejected, and frames of a link type the expression cannot be compiled for.
    pub rejected: u64,
    pub uncompilable: u64,
}

impl LinkFilter {
    /// Checks that libpcap is there and the expression compiles for `linktype` (the
    /// first input's), so a typo is reported before any work.
    pub fn new(expr: &str, linktypes: &[u32]) -> Result<LinkFilter, String> {
        let mut f = LinkFilter {
            expr: expr.to_string(),
            compiled: Vec::new(),
            rejected: 0,
            uncompilable: 0,
        };
        // Ethernet when nothing is known: it reports syntax errors as well as any.
        let check = if linktypes.is_empty() {
            &[1][..]
        } else {
            linktypes
        };
        for &l in check {
            let p = Program::compile(expr, l, MAX_SNAPLEN)?;
            f.compiled.push((l, Ok(p)));
        }
        Ok(f)
    }

    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// Does the filter accept this frame of `linktype`?
    pub fn accepts(&mut self, linktype: u32, data: &[u8], wire_len: u32) -> bool {
        let i = match self.compiled.iter().position(|(l, _)| *l == linktype) {
            Some(i) => i,
            None => {
                let p = Program::compile(&self.expr, linktype, MAX_SNAPLEN);
                self.compiled.push((linktype, p));
                self.compiled.len() - 1
            }
        };
        let ok = match &self.compiled[i].1 {
            Ok(p) => p.matches(data, wire_len),
            Err(_) => {
                self.uncompilable += 1;
                false
            }
        };
        if !ok {
            self.rejected += 1;
        }
        ok
    }
}

#[cfg(test)]
mod tests;
