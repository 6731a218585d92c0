//! Errors: asyncio's exception classes, as one enum.
//!
//! Mirrors `Lib/asyncio/exceptions.py` (CancelledError, TimeoutError,
//! InvalidStateError, LimitOverrunError, IncompleteReadError, QueueEmpty,
//! QueueFull, QueueShutDown, BrokenBarrierError) plus the builtins asyncio
//! raises (RuntimeError, OSError, ExceptionGroup, KeyboardInterrupt).
//! `socket.gaierror` is an OSError here too: an `Io` error that names its
//! `EAI_*` code.
//!
//! # Invariants
//! - `Error` is `Clone + Send + Sync`: a future's error may be read by many
//!   awaiters (asyncio re-raises the same exception object), and errors cross
//!   threads through `run_in_executor`.
//! - Messages are lowercase, say what went wrong and, where it helps, what to do.
//! - No text is shown twice by a chain printer (anyhow's `{:#}`): a wrapper
//!   either forwards both Display and `source()` to the inner error (`Io`,
//!   `Other`), or shows its own message and gives the inner error as the
//!   source (`Group`), or puts the inner text in its message and gives no
//!   source (an OS error with a context).

use std::fmt;
use std::io;
use std::sync::Arc;

/// `Result` with [`Error`] as the default error type. Task bodies return it.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every error tulip reports. The variants map to asyncio's exceptions.
///
/// ```
/// use std::io::ErrorKind;
/// tulip::run(async {
///     // raise Exception("boom") in a task; the awaiter gets it back.
///     let t = tulip::create_task(async { Err::<(), _>(tulip::Error::msg("boom")) })?;
///     let err = t.await.unwrap_err();
///     assert_eq!(err.to_string(), "boom");
///     assert!(!err.is_cancelled() && !err.is_timeout());
///     // OSError: `?` on an io::Error gives Error::Io.
///     let io = tulip::Error::from(std::io::Error::from(ErrorKind::NotFound));
///     assert_eq!(io.io_kind(), Some(ErrorKind::NotFound));
///     Ok(())
/// }).unwrap();
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Error {
    /// `asyncio.CancelledError`, with the optional message given to `cancel(msg)`.
    Cancelled(Option<Arc<str>>),
    /// `TimeoutError`: a `wait_for`, `timeout()` or `as_completed` deadline passed.
    Timeout,
    /// `asyncio.InvalidStateError`: e.g. a result set twice, or read too early.
    InvalidState(Arc<str>),
    /// `RuntimeError`: the loop was used in a way it does not allow.
    Runtime(Arc<str>),
    /// The event loop is closed; nothing more can be scheduled on it.
    Closed,
    /// `ValueError`/`TypeError`: an argument was out of range.
    InvalidArgument(Arc<str>),
    /// `asyncio.LimitOverrunError`: a stream's buffer limit was reached.
    LimitOverrun {
        /// What happened, for people.
        message: Arc<str>,
        /// How many bytes should be consumed to get past the problem.
        consumed: usize,
    },
    /// `asyncio.IncompleteReadError`: EOF came before the expected bytes.
    IncompleteRead {
        /// The bytes read before EOF.
        partial: Arc<[u8]>,
        /// How many bytes were expected (`None`: a separator was expected).
        expected: Option<usize>,
    },
    /// `asyncio.QueueEmpty`.
    QueueEmpty,
    /// `asyncio.QueueFull`.
    QueueFull,
    /// `asyncio.QueueShutDown` (3.13).
    QueueShutDown,
    /// `asyncio.BrokenBarrierError`.
    BrokenBarrier,
    /// `ExceptionGroup`, as raised by `TaskGroup`.
    Group {
        /// What the group is about.
        message: Arc<str>,
        /// The errors, in the order they happened.
        errors: Arc<[Error]>,
    },
    /// `KeyboardInterrupt`: the run was interrupted by Ctrl-C (SIGINT).
    Interrupted,
    /// A task body or callback panicked; the payload's message.
    Panic(Arc<str>),
    /// `OSError`.
    Io(Arc<io::Error>),
    /// `asyncio.SendfileNotAvailableError`: `sendfile(2)` cannot be used
    /// for this file or transport, and the fallback was disabled. The
    /// message says why.
    SendfileNotAvailable(Arc<str>),
    /// Any other error, e.g. one of the user's own.
    Other(Arc<dyn std::error::Error + Send + Sync>),
}

impl Error {
    /// A plain `Cancelled` with no message.
    pub fn cancelled() -> Error {
        Error::Cancelled(None)
    }

    /// True for [`Error::Cancelled`].
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Error::Cancelled(_))
    }

    /// True for [`Error::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout)
    }

    /// Wraps any error of the user's own.
    pub fn other<E: std::error::Error + Send + Sync + 'static>(err: E) -> Error {
        Error::Other(Arc::new(err))
    }

    /// An error made of a message, for quick user errors.
    pub fn msg(message: impl Into<String>) -> Error {
        Error::Other(Arc::new(Message(message.into())))
    }

    pub(crate) fn runtime(message: impl Into<Arc<str>>) -> Error {
        Error::Runtime(message.into())
    }

    pub(crate) fn invalid_state(message: impl Into<Arc<str>>) -> Error {
        Error::InvalidState(message.into())
    }

    pub(crate) fn invalid_argument(message: impl Into<Arc<str>>) -> Error {
        Error::InvalidArgument(message.into())
    }

    /// The `io::ErrorKind` of an [`Error::Io`], if it is one.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            Error::Io(e) => Some(e.kind()),
            _ => None,
        }
    }

    /// The OS error number behind an [`Error::Io`], if any, also when tulip
    /// wrapped the OS error with what it was doing (e.g. `connect call
    /// failed (127.0.0.1:80)`).
    ///
    /// ```
    /// let e = tulip::Error::from(std::io::Error::from_raw_os_error(libc::ECONNREFUSED));
    /// assert_eq!(e.raw_os_error(), Some(libc::ECONNREFUSED));
    /// ```
    pub fn raw_os_error(&self) -> Option<i32> {
        let Error::Io(e) = self else { return None };
        os_errno(e)
    }

    /// The `io::Error` of an [`Error::Io`] (Python's `OSError` object), to
    /// read its kind, errno or inner error.
    ///
    /// ```
    /// let e = tulip::Error::from(std::io::Error::from_raw_os_error(libc::EPIPE));
    /// assert_eq!(e.io_error().map(|io| io.kind()), Some(std::io::ErrorKind::BrokenPipe));
    /// ```
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }

    /// The error wrapped by [`Error::other`] (or inside an `io::Error` made
    /// with `io::Error::new`), if it is an `E`.
    ///
    /// ```
    /// #[derive(Debug)]
    /// struct Mine;
    /// impl std::fmt::Display for Mine {
    ///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    ///         f.write_str("mine")
    ///     }
    /// }
    /// impl std::error::Error for Mine {}
    /// let e = tulip::Error::other(Mine);
    /// assert!(e.downcast_ref::<Mine>().is_some());
    /// assert_eq!(e.to_string(), "mine");
    /// ```
    pub fn downcast_ref<E: std::error::Error + 'static>(&self) -> Option<&E> {
        match self {
            Error::Other(e) => e.downcast_ref(),
            Error::Io(e) => e.get_ref()?.downcast_ref(),
            _ => None,
        }
    }

    /// The message of a [`Error::Cancelled`] error, if any.
    pub fn cancel_message(&self) -> Option<&str> {
        match self {
            Error::Cancelled(Some(m)) => Some(m),
            _ => None,
        }
    }
}

/// The error type behind [`Error::msg`].
#[derive(Debug)]
struct Message(String);

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Message {}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Cancelled(None) => f.write_str("cancelled"),
            Error::Cancelled(Some(m)) => write!(f, "cancelled: {m}"),
            Error::Timeout => f.write_str(
                "timed out: the deadline passed before the work finished; give it a longer timeout if it needs one",
            ),
            Error::InvalidState(m) => write!(f, "invalid state: {m}"),
            Error::Runtime(m) => f.write_str(m),
            Error::Closed => f.write_str(
                "event loop is closed: create a new loop (or use tulip::run) instead of reusing a closed one",
            ),
            Error::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
            Error::LimitOverrun { message, consumed } => {
                write!(
                    f,
                    "{message}, at byte {consumed}: raise the stream's limit, or read the data with read(n)"
                )
            }
            Error::IncompleteRead {
                partial,
                expected: Some(n),
            } => write!(
                f,
                "incomplete read: {} bytes read on a total of {n} expected bytes; the \
                 stream ended first, and the bytes read are in the error's partial",
                partial.len()
            ),
            Error::IncompleteRead {
                partial,
                expected: None,
            } => write!(
                f,
                "incomplete read: {} bytes read on a total of undefined expected bytes; \
                 the stream ended first, and the bytes read are in the error's partial",
                partial.len()
            ),
            Error::QueueEmpty => f.write_str("queue is empty: await get() to wait for an item"),
            Error::QueueFull => f.write_str("queue is full: await put() to wait for a free slot"),
            Error::QueueShutDown => f.write_str(
                "queue is shut down: it takes no more items, and gives none once empty",
            ),
            Error::BrokenBarrier => f.write_str("barrier is broken: reset() it before reuse"),
            Error::Group { message, errors } => {
                write!(f, "{message} ({} sub-exception", errors.len())?;
                if errors.len() != 1 {
                    f.write_str("s")?;
                }
                f.write_str(")")
            }
            Error::Interrupted => f.write_str("interrupted (Ctrl-C)"),
            Error::Panic(m) => write!(f, "panicked: {m}"),
            Error::Io(e) => write!(f, "{e}"),
            Error::SendfileNotAvailable(m) => write!(
                f,
                "sendfile is not available: {m}; pass fallback = true to send the file with reads and writes instead"
            ),
            Error::Other(e) => write!(f, "{e}"),
        }
    }
}

/// `Io` and `Other` are transparent wrappers (thiserror's
/// `#[error(transparent)]`): their Display is the inner error's and their
/// source the inner error's source, so a chain printer (anyhow's `{:#}`)
/// shows the inner text once. The inner error itself is reached with
/// [`Error::io_error`] and [`Error::downcast_ref`]. A group shows its own
/// message and gives its first error as the source.
impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => std::error::Error::source(&**e),
            Error::Other(e) => e.source(),
            Error::Group { errors, .. } => errors.first().map(|e| e as _),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::Io(Arc::new(e))
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        match e {
            Error::Io(inner) => match Arc::try_unwrap(inner) {
                Ok(err) => err,
                // Shared with a clone: a plain OS error is made again (its
                // kind, errno and text); one with a context is wrapped
                // whole, where `Error::raw_os_error` finds its errno.
                Err(shared) => match shared.raw_os_error() {
                    Some(code) => io::Error::from_raw_os_error(code),
                    None => io::Error::new(shared.kind(), Error::Io(shared)),
                },
            },
            Error::Timeout => io::Error::new(io::ErrorKind::TimedOut, e),
            other => io::Error::other(other),
        }
    }
}

/// An OS error together with what was being done, and where, worded as
/// asyncio words it (`connect call failed (127.0.0.1:80)`, `error while
/// attempting to bind on address 127.0.0.1:80`). Its text ends with the OS
/// error's, so that error is not also its source (a chain printer would
/// show it twice); its kind is the outer `io::Error`'s, and its errno is
/// found by [`Error::raw_os_error`].
#[derive(Debug)]
pub(crate) struct OsErrorContext {
    context: String,
    os_error: io::Error,
}

impl fmt::Display for OsErrorContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.context, self.os_error)
    }
}

impl std::error::Error for OsErrorContext {}

/// The errno behind `e`: its own, or that of the OS error it wraps with a
/// context, or of the tulip error it wraps (`io::Error::from(Error)`).
fn os_errno(e: &io::Error) -> Option<i32> {
    if let Some(n) = e.raw_os_error() {
        return Some(n);
    }
    let inner = e.get_ref()?;
    if let Some(ctx) = inner.downcast_ref::<OsErrorContext>() {
        return os_errno(&ctx.os_error);
    }
    inner.downcast_ref::<Error>().and_then(Error::raw_os_error)
}

/// `e` with `context` in front of its message, and the same kind.
pub(crate) fn os_error_with_context(e: io::Error, context: impl Into<String>) -> io::Error {
    io::Error::new(
        e.kind(),
        OsErrorContext {
            context: context.into(),
            os_error: e,
        },
    )
}

/// A failed `bind` to `addr`, worded as asyncio's: `error while attempting
/// to bind on address 127.0.0.1:8080: Address in use (os error 98)`.
pub(crate) fn bind_error(e: io::Error, addr: &std::net::SocketAddr) -> io::Error {
    os_error_with_context(
        e,
        format!("error while attempting to bind on address {addr}"),
    )
}

/// A failed name lookup (Python's `socket.gaierror`): `what` (the call and
/// its arguments), `text` (`gai_strerror(code)`), the `EAI_*` name, and what
/// to do where that is clear: `getnameinfo(127.0.0.1:80, flags=0x40000) failed:
/// Bad value for ai_flags (EAI_BADFLAGS); pass 0 or tulip::NI_* flags ORed
/// together`. Bad flags or family are `InvalidInput`, no name `NotFound`,
/// the rest `Other`.
pub(crate) fn gai_error(what: &str, code: i32, text: &str) -> io::Error {
    let (kind, name, hint) = match code {
        libc::EAI_BADFLAGS => (
            io::ErrorKind::InvalidInput,
            "EAI_BADFLAGS",
            "; pass 0 or tulip::NI_* flags ORed together",
        ),
        libc::EAI_FAMILY => (io::ErrorKind::InvalidInput, "EAI_FAMILY", ""),
        libc::EAI_NONAME => (
            io::ErrorKind::NotFound,
            "EAI_NONAME",
            "; without NI_NAMEREQD the numeric form is returned instead",
        ),
        libc::EAI_AGAIN => (
            io::ErrorKind::Other,
            "EAI_AGAIN",
            "; the name server did not answer in time, try again later",
        ),
        libc::EAI_FAIL => (io::ErrorKind::Other, "EAI_FAIL", ""),
        libc::EAI_MEMORY => (io::ErrorKind::OutOfMemory, "EAI_MEMORY", ""),
        libc::EAI_OVERFLOW => (io::ErrorKind::Other, "EAI_OVERFLOW", ""),
        _ => (io::ErrorKind::Other, "", ""),
    };
    let name = if name.is_empty() {
        format!("EAI code {code}")
    } else {
        name.to_owned()
    };
    io::Error::new(kind, format!("{what} failed: {text} ({name}){hint}"))
}

/// A callback that failed with an error rather than a panic (a context
/// given with `call_soon_in` that is entered already, asyncio's
/// `RuntimeError` from `ctx.run`): unwound with `resume_unwind` (no panic
/// message printed), and reported as that error by the loop.
pub(crate) struct CallbackError(pub(crate) Error);

/// The error a callback's unwind stands for: its [`CallbackError`], or
/// the panic.
pub(crate) fn callback_error(payload: &(dyn std::any::Any + Send)) -> Error {
    match payload.downcast_ref::<CallbackError>() {
        Some(CallbackError(e)) => e.clone(),
        None => Error::Panic(panic_message(payload)),
    }
}

/// Turns a caught panic payload into a message.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> Arc<str> {
    if let Some(s) = payload.downcast_ref::<&str>() {
        Arc::from(*s)
    } else if let Some(s) = payload.downcast_ref::<String>() {
        Arc::from(s.as_str())
    } else {
        Arc::from("non-string panic payload")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_send_sync_clone() {
        fn check<T: Send + Sync + Clone + std::error::Error>() {}
        check::<Error>();
    }

    #[test]
    fn a_shared_os_error_keeps_its_errno_as_an_io_error() {
        let e = Error::from(io::Error::from_raw_os_error(libc::ECONNRESET));
        let _clone = e.clone(); // shared: the Arc cannot be unwrapped
        let back = io::Error::from(e);
        assert_eq!(back.raw_os_error(), Some(libc::ECONNRESET));
        assert_eq!(back.kind(), io::ErrorKind::ConnectionReset);
        let ctx = Error::from(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            OsErrorContext {
                context: "connect call failed (127.0.0.1:9)".into(),
                os_error: io::Error::from_raw_os_error(libc::ECONNREFUSED),
            },
        ));
        let _clone = ctx.clone();
        let back = io::Error::from(ctx);
        assert_eq!(back.kind(), io::ErrorKind::ConnectionRefused);
        let inner = back.get_ref().and_then(|e| e.downcast_ref::<Error>());
        assert_eq!(
            inner.and_then(Error::raw_os_error),
            Some(libc::ECONNREFUSED),
            "the context's errno is still found"
        );
    }

    /// The texts an error-chain printer (anyhow's `{:#}`, a
    /// `std::error::Report`-style loop) shows for `e`: its Display, then
    /// each `source()`'s.
    fn chain(e: &(dyn std::error::Error + 'static)) -> Vec<String> {
        let mut texts = vec![e.to_string()];
        let mut cause = e.source();
        while let Some(c) = cause {
            texts.push(c.to_string());
            cause = c.source();
        }
        texts
    }

    /// A user's error with a cause of its own, as `Error::other` wraps it.
    #[derive(Debug)]
    struct Outer(io::Error);

    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("cannot load the config")
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn no_text_appears_twice_in_a_source_chain() {
        let refused = || io::Error::from_raw_os_error(libc::ECONNREFUSED);
        let connect = || os_error_with_context(refused(), "connect call failed (127.0.0.1:9)");
        let shared = |e: Error| {
            let _clone = e.clone(); // shared: io::Error::from wraps it
            io::Error::from(e)
        };
        let errors = [
            Error::from(refused()),
            Error::from(connect()),
            Error::from(bind_error(refused(), &"127.0.0.1:80".parse().unwrap())),
            Error::from(gai_error(
                "getnameinfo(127.0.0.1:80, flags=0x0)",
                libc::EAI_FAIL,
                "failure",
            )),
            Error::from(shared(Error::from(connect()))),
            Error::from(io::Error::from(Error::Timeout)),
            Error::from(io::Error::from(Error::msg("boom"))),
            Error::msg("boom"),
            Error::other(Outer(refused())),
            Error::other(connect()),
            Error::Group {
                message: "unhandled errors in a TaskGroup".into(),
                errors: Arc::from([Error::from(connect()), Error::msg("boom")]),
            },
            Error::Cancelled(Some("bye".into())),
            Error::Timeout,
            Error::Closed,
            Error::invalid_argument("delay must not be NaN"),
        ];
        for e in &errors {
            let texts = chain(e);
            // Each link's text is shown after the ones before it: a later
            // text found inside an earlier one is printed twice.
            for (i, later) in texts.iter().enumerate().skip(1) {
                for earlier in &texts[..i] {
                    assert!(
                        !earlier.contains(later.as_str()),
                        "`{later}` is printed twice in the chain {texts:?}"
                    );
                }
            }
        }
        // What the chain still holds: a user's own cause, and the errno.
        assert_eq!(
            chain(&errors[8]),
            ["cannot load the config".to_owned(), refused().to_string()]
        );
        assert_eq!(errors[1].raw_os_error(), Some(libc::ECONNREFUSED));
        assert_eq!(errors[4].raw_os_error(), Some(libc::ECONNREFUSED));
    }

    #[test]
    fn messages_are_lowercase() {
        assert_eq!(
            Error::QueueFull.to_string(),
            "queue is full: await put() to wait for a free slot"
        );
        let e = Error::IncompleteRead {
            partial: Arc::from(&b"ab"[..]),
            expected: Some(5),
        };
        assert!(e.to_string().contains("2 bytes read on a total of 5"));
        assert!(e.to_string().contains("the stream ended first"), "{e}");
        let e = Error::IncompleteRead {
            partial: Arc::from(&b"ab"[..]),
            expected: None,
        };
        assert!(e.to_string().contains("the stream ended first"), "{e}");
    }
}
