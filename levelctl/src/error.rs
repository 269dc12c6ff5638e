//! Errors, and the exit codes they map to: 1 for a refused check, 2 for bad input or usage.

use core::fmt;

use crate::report::Refusal;
use crate::state::StateError;

/// A malformed input: the file, the 1-based line and the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputError {
    /// The file as given (or a label such as `--featureset` for command-line text).
    pub file: String,
    /// 1-based line; 0 when the whole file is at fault (unreadable).
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

impl InputError {
    /// An error at `file:line`.
    pub fn new(file: &str, line: usize, reason: impl Into<String>) -> InputError {
        InputError {
            file: file.to_string(),
            line,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.reason)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.reason)
        }
    }
}

impl std::error::Error for InputError {}

/// Everything an operation can fail with.
#[derive(Debug)]
pub enum Error {
    /// A malformed input file or text.
    Input(InputError),
    /// A state file that cannot be used (missing, corrupt, newer, or not writable).
    State(StateError),
    /// A command that does not fit the pool: unknown names, wrong power state.
    Usage(String),
    /// A check refused the operation; the refusal says why and what would work.
    Refused(Box<Refusal>),
}

impl Error {
    /// The process exit code: 1 for a refusal, 2 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Refused(_) => 1,
            Error::Input(_) | Error::State(_) | Error::Usage(_) => 2,
        }
    }

    /// The kind, for JSON output: `refused`, `input`, `state` or `usage`.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Refused(_) => "refused",
            Error::Input(_) => "input",
            Error::State(_) => "state",
            Error::Usage(_) => "usage",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Input(e) => write!(f, "{e}"),
            Error::State(e) => write!(f, "{e}"),
            Error::Usage(e) => f.write_str(e),
            Error::Refused(r) => write!(f, "{} {} refused: {}", r.operation, r.subject, r.reason),
        }
    }
}

impl std::error::Error for Error {}

impl From<InputError> for Error {
    fn from(e: InputError) -> Error {
        Error::Input(e)
    }
}

impl From<StateError> for Error {
    fn from(e: StateError) -> Error {
        Error::State(e)
    }
}

/// `Error::Usage` from a message.
pub(crate) fn usage(message: impl Into<String>) -> Error {
    Error::Usage(message.into())
}
