//! The one error type shared by every Prism crate.

use std::path::PathBuf;

/// Everything that can go wrong in Prism, with enough context to act on.
///
/// Library code never panics on bad input: it returns one of these. Messages name the file
/// (where there is one) and the problem.
///
/// New variants may be added (`#[non_exhaustive]`): callers match the ones they act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrismError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// Another run is writing to the same directory (it holds the directory's [`crate::DirLock`]).
    #[error(
        "{path}: in use by another Prism run (it holds {path}/.prism.lock); wait for it to end \
         or choose another output directory"
    )]
    Busy {
        /// The directory.
        path: PathBuf,
    },
    /// A safetensors file is truncated, corrupt or holds something unexpected.
    #[error("{path}: invalid safetensors file: {message}")]
    Safetensors {
        /// The file involved.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A GGUF file is truncated, corrupt or uses something we cannot read.
    #[error("{path}: invalid GGUF file: {message}")]
    Gguf {
        /// The file involved.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An activation cache is incomplete, corrupt or does not fit the request.
    #[error("{path}: activation cache problem: {message}")]
    Cache {
        /// The cache directory or shard file involved.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A model configuration is missing a key or holds an unusable value.
    #[error("{path}: invalid model config: {message}")]
    Config {
        /// The file involved (config.json, or the GGUF file holding the metadata).
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A tokenizer could not be loaded or does not fit the model.
    #[error("{path}: tokenizer problem: {message}")]
    Tokenizer {
        /// The file involved.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A weight the architecture needs is absent, or has the wrong shape.
    #[error("{path}: weight `{name}`: {message}")]
    Weight {
        /// The file or directory holding the weights.
        path: PathBuf,
        /// The tensor name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// A hook-point name that is not one of the TransformerLens names Prism knows.
    #[error("unknown hook point `{name}`: {reason}")]
    UnknownHook {
        /// The name as given.
        name: String,
        /// Why it was rejected (and what would be valid).
        reason: String,
    },
    /// A hook or intervention that does not fit the tensor it is applied to.
    #[error("hook {hook}: {message}")]
    Hook {
        /// The hook point.
        hook: String,
        /// What is wrong.
        message: String,
    },
    /// Tensor shapes that do not fit together.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// The requested compute device is not available.
    #[error("device `{device}` is not available: {message}")]
    Device {
        /// The device asked for.
        device: String,
        /// Why it cannot be used.
        message: String,
    },
    /// Input that is empty or otherwise unusable (an empty text, an empty batch).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A computation produced NaN or infinity where a finite number was required.
    #[error("non-finite value: {0}")]
    NonFinite(String),
    /// Training diverged: the loss or a gradient was not finite, or the loss rose to 10⁴ times
    /// the best so far. The dictionary is left as it was after step `step − 1` (a sweep can
    /// retry the run with a lower learning rate from there).
    #[error(
        "non-finite value: {}training diverged at step {step}: loss {loss} (best so far \
         {best:?}); the parameters are those after step {}{}",
        .run.as_ref().map(|r| format!("{r}: ")).unwrap_or_default(),
        .step.saturating_sub(1),
        .checkpoint.as_ref().map(|c| format!("; its last checkpoint in {} is kept", c.display())).unwrap_or_default()
    )]
    Diverged {
        /// The step that diverged (1-based).
        step: u64,
        /// Its loss.
        loss: f64,
        /// The lowest loss before it.
        best: Option<f64>,
        /// The run, when it was one of a group.
        run: Option<String>,
        /// The run's directory, whose last checkpoint is kept.
        checkpoint: Option<PathBuf>,
    },
    /// Reading a tensor back from the device failed.
    #[error("tensor readback failed: {0}")]
    Readback(String),
    /// A labelled dataset (CSV) is malformed; `line` is 1-based (the header is line 1).
    #[error("{path}:{line}: {message}")]
    Dataset {
        /// The file.
        path: PathBuf,
        /// The offending line.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// A model hub request failed, or a hub file is not in the local cache while offline.
    #[error("hub repository `{repo}`{}: {problem}", .file.as_ref().map(|f| format!(", file `{f}`")).unwrap_or_default())]
    Hub {
        /// The repository (`ORG/NAME`, with `@REVISION` when not the default branch).
        repo: String,
        /// The file within it, when the problem concerns one.
        file: Option<String>,
        /// What went wrong.
        problem: HubProblem,
    },
    /// An external command (e.g. `pip`) failed.
    #[error("command `{command}` failed: {message}")]
    Command {
        /// The command line.
        command: String,
        /// Its error output or exit status.
        message: String,
    },
}

/// Why a model hub request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HubProblem {
    /// No such repository, or a private one the token (if any) cannot see.
    #[error(
        "repository not found (if it is private or gated, set HF_TOKEN or log in with \
         `hf auth login`)"
    )]
    RepoNotFound,
    /// The branch, tag or commit does not exist.
    #[error("revision not found")]
    RevisionNotFound,
    /// The repository has no such file at that revision.
    #[error("no such file in the repository")]
    EntryNotFound,
    /// HTTP 401: the token is missing or invalid.
    #[error("unauthorized (HTTP 401): set HF_TOKEN to a valid token")]
    Unauthorized,
    /// HTTP 403: the token is valid but has no access (a gated repository whose terms are not
    /// accepted, or a token without read access).
    #[error("access denied (HTTP 403){}", if .0.is_empty() { String::new() } else { format!(": {}", .0) })]
    Forbidden(String),
    /// `HF_HUB_OFFLINE` is set (or the hub could not be reached) and the file is not cached.
    #[error("not in the local cache {0} and the hub is not reachable (offline)")]
    NotCached(String),
    /// The connection failed or was lost (after retrying); a partial download is kept and
    /// resumed by the next attempt.
    #[error("connection problem: {0}")]
    Connection(String),
    /// Any other HTTP error status.
    #[error("HTTP {status}: {message}")]
    Http {
        /// The status code.
        status: u16,
        /// The server's message, if any.
        message: String,
    },
    /// The hub answered something Prism cannot use (a missing header, malformed JSON), or a
    /// downloaded file does not match its checksum or size.
    #[error("bad answer from the hub: {0}")]
    BadAnswer(String),
}

/// Shorthand for results in Prism.
pub type Result<T, E = PrismError> = std::result::Result<T, E>;

impl PrismError {
    /// Wraps an I/O error with the path it concerns.
    ///
    /// ```
    /// use prism_core::PrismError;
    /// let e = PrismError::io("weights.bin", std::io::Error::other("disk on fire"));
    /// assert_eq!(e.to_string(), "weights.bin: disk on fire");
    /// ```
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        PrismError::Io {
            path: path.into(),
            source,
        }
    }
}
