//! Output to a pipe whose reader left (`tcpsight ... | head`): like grep and tshark,
//! tcpsight then stops quietly with status 0. Rust ignores SIGPIPE, so the write
//! fails with EPIPE instead of killing the process; each face checks for it.

use std::io;

/// What a face's `Result<_, String>` carries when its output's reader left.
pub const BROKEN: &str = "broken pipe";

pub fn is_broken(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::BrokenPipe
}
