use std::fmt;

/// A capture that could not be read (any further), with where it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError {
    pub path: String,
    /// Byte offset in the (decompressed) capture stream, where it applies.
    pub offset: Option<u64>,
    pub message: String,
}

impl ReadError {
    pub fn new(path: &str, offset: Option<u64>, message: impl Into<String>) -> ReadError {
        ReadError {
            path: path.to_string(),
            offset,
            message: message.into(),
        }
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.offset {
            Some(o) => write!(f, "{}: byte {}: {}", self.path, o, self.message),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

impl std::error::Error for ReadError {}
