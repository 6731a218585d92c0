//! Transports: the byte pipes under protocols. Mirrors `Lib/asyncio/transports.py`
//! (`BaseTransport`, `ReadTransport`, `WriteTransport`, `Transport`,
//! `DatagramTransport`) and the write-buffer limits of `_FlowControlMixin`.
//!
//! A transport owns a file descriptor and moves bytes between it and a
//! protocol (see [`protocols`](crate::protocols)). The traits here are what
//! protocols and streams see; the socket transport of
//! [`selector_events`](crate::selector_events) implements them, and so can
//! pipe transports (subprocesses) or test doubles.
//!
//! Every method takes `&self`: a transport is shared (`Rc<dyn Transport>`)
//! between the loop's reader/writer callbacks, its protocol and the streams,
//! and keeps its state in cells, as asyncio's objects do.
//!
//! # Invariants
//! - [`WriteTransport::write`] never blocks: bytes the kernel does not take
//!   at once are buffered and flushed by the loop's writer callback (N3).
//! - The write buffer limits satisfy `low <= high`; `pause_writing` is
//!   called when the buffer grows above `high`, `resume_writing` when it
//!   drains to `low` or below, each at most once per crossing.
//! - Once [`BaseTransport::is_closing`] is true it stays true.

use std::fmt;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::protocols::{BufferedProtocol, DatagramProtocol, Protocol};

/// Default high-water mark of a write buffer (asyncio: 64 KiB).
pub const DEFAULT_HIGH_WATER: usize = 64 * 1024;

/// What [`BaseTransport::get_extra_info`] returns: one of the values asyncio
/// keeps in a transport's `_extra` dict.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ExtraInfo {
    /// An IP address and port (`peername`, `sockname` of a TCP or UDP socket).
    Addr(SocketAddr),
    /// A Unix socket address (`peername`, `sockname` of a Unix socket).
    UnixAddr(std::os::unix::net::SocketAddr),
    /// A file descriptor (`socket`, `pipe`). Borrowed: the transport owns it.
    Fd(RawFd),
    /// A number (e.g. a subprocess `pid`).
    Int(i64),
    /// Text.
    Str(Arc<str>),
}

impl ExtraInfo {
    /// The IP address, if this is one.
    pub fn as_addr(&self) -> Option<SocketAddr> {
        match self {
            ExtraInfo::Addr(a) => Some(*a),
            _ => None,
        }
    }

    /// The Unix address, if this is one.
    pub fn as_unix_addr(&self) -> Option<&std::os::unix::net::SocketAddr> {
        match self {
            ExtraInfo::UnixAddr(a) => Some(a),
            _ => None,
        }
    }

    /// The file descriptor, if this is one.
    pub fn as_fd(&self) -> Option<RawFd> {
        match self {
            ExtraInfo::Fd(fd) => Some(*fd),
            _ => None,
        }
    }

    /// The number, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            ExtraInfo::Int(n) => Some(*n),
            _ => None,
        }
    }
}

impl fmt::Display for ExtraInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExtraInfo::Addr(a) => write!(f, "{a}"),
            ExtraInfo::UnixAddr(a) => match a.as_pathname() {
                Some(p) => write!(f, "{}", p.display()),
                None => f.write_str("<unnamed>"),
            },
            ExtraInfo::Fd(fd) => write!(f, "fd {fd}"),
            ExtraInfo::Int(n) => write!(f, "{n}"),
            ExtraInfo::Str(s) => f.write_str(s),
        }
    }
}

/// A transport described by what it knows of itself, for reports: its
/// socket or pipe, its peer and whether it is closing (asyncio's reports
/// show the transport's repr, which says as much).
pub(crate) fn describe(t: &(impl BaseTransport + ?Sized)) -> String {
    let mut out = String::from("<transport");
    for key in ["socket", "pipe", "peername"] {
        if let Some(v) = t.get_extra_info(key) {
            out.push_str(&format!(" {key}={v}"));
        }
    }
    if t.is_closing() {
        out.push_str(" closing");
    }
    out.push('>');
    out
}

/// Where a datagram comes from or goes to: what asyncio passes as `addr`
/// to `datagram_received` and `sendto` (a `(host, port)` tuple for UDP, a
/// path for `AF_UNIX`).
///
/// ```
/// use tulip::DatagramAddr;
/// let udp = DatagramAddr::from("127.0.0.1:53".parse::<std::net::SocketAddr>().unwrap());
/// assert_eq!(udp.to_string(), "127.0.0.1:53");
/// let unix = DatagramAddr::from_path("/tmp/x.sock").unwrap();
/// assert_eq!(unix.as_pathname(), Some(std::path::Path::new("/tmp/x.sock")));
/// assert_ne!(udp, unix);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum DatagramAddr {
    /// An IP address and port (UDP).
    Inet(SocketAddr),
    /// A Unix socket address (`AF_UNIX` datagrams): a path, or unnamed for
    /// a socket that was never bound (which cannot be answered).
    Unix(std::os::unix::net::SocketAddr),
}

impl DatagramAddr {
    /// A Unix address for `path`. Fails if the path is too long for a
    /// socket address (about 107 bytes) or holds a NUL byte.
    pub fn from_path(path: impl AsRef<std::path::Path>) -> Result<DatagramAddr> {
        Ok(DatagramAddr::Unix(
            std::os::unix::net::SocketAddr::from_pathname(path)?,
        ))
    }

    /// The IP address, if this is one.
    pub fn as_inet(&self) -> Option<SocketAddr> {
        match self {
            DatagramAddr::Inet(a) => Some(*a),
            DatagramAddr::Unix(_) => None,
        }
    }

    /// The path of a Unix address, if it has one.
    pub fn as_pathname(&self) -> Option<&std::path::Path> {
        match self {
            DatagramAddr::Inet(_) => None,
            DatagramAddr::Unix(a) => a.as_pathname(),
        }
    }
}

impl From<SocketAddr> for DatagramAddr {
    fn from(a: SocketAddr) -> Self {
        DatagramAddr::Inet(a)
    }
}

impl From<std::os::unix::net::SocketAddr> for DatagramAddr {
    fn from(a: std::os::unix::net::SocketAddr) -> Self {
        DatagramAddr::Unix(a)
    }
}

impl PartialEq for DatagramAddr {
    /// Unix addresses are equal if their paths are (two unnamed addresses
    /// are equal too).
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (DatagramAddr::Inet(a), DatagramAddr::Inet(b)) => a == b,
            (DatagramAddr::Unix(a), DatagramAddr::Unix(b)) => {
                use std::os::linux::net::SocketAddrExt;
                a.as_pathname() == b.as_pathname()
                    && a.as_abstract_name() == b.as_abstract_name()
                    && a.is_unnamed() == b.is_unnamed()
            }
            _ => false,
        }
    }
}

impl fmt::Display for DatagramAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatagramAddr::Inet(a) => write!(f, "{a}"),
            DatagramAddr::Unix(a) => match a.as_pathname() {
                Some(p) => write!(f, "{}", p.display()),
                None => f.write_str("<unnamed>"),
            },
        }
    }
}

/// asyncio's `BaseTransport`.
pub trait BaseTransport {
    /// Optional information about the transport (asyncio's
    /// `get_extra_info(name)`): `"peername"`, `"sockname"`, `"socket"`,
    /// `"pipe"`, ... `None` if the transport does not know `name`.
    fn get_extra_info(&self, name: &str) -> Option<ExtraInfo>;

    /// True once the transport is closing or closed.
    fn is_closing(&self) -> bool;

    /// Closes the transport: buffered data is flushed asynchronously, then
    /// the protocol's `connection_lost(None)` is called. No more data is
    /// received. Closing twice is a no-op.
    fn close(&self);
}

/// asyncio's `ReadTransport`: the side that delivers `data_received`.
pub trait ReadTransport: BaseTransport {
    /// True while the transport is receiving (not paused, not closing).
    fn is_reading(&self) -> bool;

    /// Stops calling the protocol's `data_received` until
    /// [`resume_reading`](ReadTransport::resume_reading). No-op if paused or closing.
    fn pause_reading(&self);

    /// Resumes receiving. No-op if not paused or closing.
    fn resume_reading(&self);
}

/// asyncio's `WriteTransport`: a buffered, never-blocking writer.
pub trait WriteTransport: BaseTransport {
    /// Sets the write buffer's high- and low-water marks (asyncio's
    /// `set_write_buffer_limits(high, low)`). `None` for `high` means 64 KiB,
    /// or 4 × `low` if `low` is given; `None` for `low` means `high / 4`.
    /// Fails if `low > high`. May call `pause_writing` at once, if the
    /// buffer is now over `high`; never `resume_writing`: a protocol paused
    /// under the old marks resumes when the writer next flushes the buffer
    /// down to the new `low` (asyncio's `set_write_buffer_limits` calls only
    /// `_maybe_pause_protocol`).
    fn set_write_buffer_limits(&self, high: Option<usize>, low: Option<usize>) -> Result<()>;

    /// The `(low, high)` water marks.
    fn get_write_buffer_limits(&self) -> (usize, usize);

    /// How many bytes wait in the write buffer.
    fn get_write_buffer_size(&self) -> usize;

    /// Writes `data` without blocking: what the kernel does not take now is
    /// buffered (N3). Fails after [`write_eof`](WriteTransport::write_eof);
    /// silently drops data once the connection is lost (as asyncio does).
    fn write(&self, data: &[u8]) -> Result<()>;

    /// Writes several buffers, in order (asyncio's `writelines`).
    fn writelines(&self, list: &[&[u8]]) -> Result<()> {
        for data in list {
            self.write(data)?;
        }
        Ok(())
    }

    /// Closes the write end after the buffered data is flushed (half-close).
    /// With nothing buffered, a socket is shut down at once, and the OS's
    /// refusal (say `ENOTCONN` on a connection the peer reset) is this
    /// call's error, as asyncio raises it; later, it goes to the exception
    /// handler.
    fn write_eof(&self) -> Result<()>;

    /// True if [`write_eof`](WriteTransport::write_eof) is supported.
    fn can_write_eof(&self) -> bool;

    /// Closes at once: the buffer is dropped, and `connection_lost(None)` is
    /// called soon.
    fn abort(&self);

    /// asyncio's `_sendfile_compatible`: the socket transport behind this
    /// one if [`EventLoop::sendfile`](crate::EventLoop::sendfile) may hand
    /// its socket to `sendfile(2)` (asyncio's `TRY_NATIVE`). Other
    /// transports keep the default, `None`, and are sent to with writes
    /// (the fallback).
    fn as_socket_transport(&self) -> Option<&crate::SocketTransport> {
        None
    }
}

/// asyncio's `Transport`: a bidirectional stream transport (a connected socket).
///
/// `get_protocol`/`set_protocol` are asyncio's `BaseTransport` methods;
/// they are here because the protocol type is the stream [`Protocol`] (a
/// [`DatagramTransport`] has its own pair). The defaults are asyncio's
/// base class: no protocol to give, and a set that fails.
pub trait Transport: ReadTransport + WriteTransport {
    /// The protocol (asyncio's `get_protocol()`): the one last set, until
    /// `connection_lost` ran. `None` also while it is a
    /// [`BufferedProtocol`] (a [`SocketTransport`](crate::SocketTransport)
    /// gives that one with `buffered_protocol()`).
    fn get_protocol(&self) -> Option<Rc<dyn Protocol>> {
        None
    }

    /// Switches protocols mid-connection (asyncio's
    /// `set_protocol(protocol)`, e.g. after an HTTP `Upgrade`): from the
    /// next callback on, the transport calls `protocol` (`data_received`,
    /// `eof_received`, `pause_writing`/`resume_writing`,
    /// `connection_lost`). Nothing is called now: not `connection_made`,
    /// and the bytes the current `data_received` was given stay the old
    /// protocol's to pass on, as in asyncio. Called from inside a
    /// callback, the next read already goes to the new protocol. After
    /// `connection_lost`, nothing would ever be called, so the protocol is
    /// not kept. Fails for a transport that cannot switch (the default).
    ///
    /// ```
    /// use std::cell::RefCell;
    /// use std::rc::Rc;
    /// use tulip::transports::prelude::*;
    ///
    /// /// Echoes upper-cased: the protocol switched to.
    /// struct Upper(Rc<dyn Transport>);
    /// impl Protocol for Upper {
    ///     fn data_received(&self, data: &[u8]) {
    ///         let _ = self.0.write(&data.to_ascii_uppercase());
    ///     }
    /// }
    /// /// Waits for "UPGRADE\n", then hands the connection to `Upper`.
    /// #[derive(Default)]
    /// struct Greeter(RefCell<Option<Rc<dyn Transport>>>);
    /// impl Protocol for Greeter {
    ///     fn connection_made(&self, t: Rc<dyn Transport>) {
    ///         *self.0.borrow_mut() = Some(t);
    ///     }
    ///     fn data_received(&self, data: &[u8]) {
    ///         let t = self.0.borrow().clone().unwrap();
    ///         if let Some(rest) = data.strip_prefix(b"UPGRADE\n") {
    ///             let upper = Rc::new(Upper(t.clone()));
    ///             t.set_protocol(upper.clone()).unwrap();
    ///             upper.data_received(rest); // this chunk's rest: ours to pass on
    ///         }
    ///     }
    /// }
    /// tulip::run(async {
    ///     let lp = tulip::get_running_loop()?;
    ///     let server = lp.create_server(|| Rc::new(Greeter::default()), "127.0.0.1", 0).await?;
    ///     let port = server.local_addrs()[0].port();
    ///     let (r, w) = tulip::open_connection("127.0.0.1", port).await?;
    ///     w.write(b"UPGRADE\nhello")?;
    ///     assert_eq!(r.readexactly(5).await?, b"HELLO");
    ///     server.close();
    ///     Ok(())
    /// }).unwrap();
    /// ```
    fn set_protocol(&self, protocol: Rc<dyn Protocol>) -> Result<()> {
        let _ = protocol;
        Err(Error::runtime(format!(
            "{} cannot change its protocol: it does not implement set_protocol",
            std::any::type_name::<Self>()
        )))
    }

    /// [`set_protocol`](Transport::set_protocol) with a [`BufferedProtocol`]:
    /// the next reads go into its buffers (asyncio's `set_protocol` picks
    /// the read path by the protocol's kind). Only a socket transport
    /// reads into a protocol's buffer; the default fails.
    fn set_buffered_protocol(&self, protocol: Rc<dyn BufferedProtocol>) -> Result<()> {
        let _ = protocol;
        Err(Error::runtime(format!(
            "{} cannot read into a BufferedProtocol: only a socket transport does; \
             give this one a Protocol with set_protocol",
            std::any::type_name::<Self>()
        )))
    }
}

/// asyncio's `DatagramTransport`.
pub trait DatagramTransport: BaseTransport {
    /// Sends one datagram to `addr`, or to the connected peer if `None`.
    /// Never blocks: datagrams the kernel refuses now are queued. An
    /// address of the other kind (a path for a UDP endpoint, an IP address
    /// for a Unix one), or other than the connected peer, is an
    /// [`Error::InvalidArgument`]; a failed send goes to the protocol's
    /// `error_received`, as in asyncio: that includes an IPv6 address on
    /// an IPv4 socket, which the kernel refuses (`EAFNOSUPPORT`).
    fn sendto(&self, data: &[u8], addr: Option<DatagramAddr>) -> Result<()>;

    /// Closes at once, dropping queued datagrams.
    fn abort(&self);

    /// How many bytes of datagrams are queued, counting 8 bytes of header
    /// for each (as asyncio 3.12+ does).
    fn get_write_buffer_size(&self) -> usize;

    /// Sets the high- and low-water marks of the datagram queue, as
    /// [`WriteTransport::set_write_buffer_limits`] does for a stream
    /// (asyncio's datagram transport has it from `_FlowControlMixin`):
    /// `pause_writing` is called when the queue (counted as
    /// [`get_write_buffer_size`](DatagramTransport::get_write_buffer_size)
    /// does) grows above `high`, `resume_writing` when it drains to `low`.
    /// `None` for `high` means 64 KiB, or 4 × `low` if `low` is given;
    /// `None` for `low` means `high / 4`. Fails if `low > high`. May call
    /// `pause_writing` at once.
    ///
    /// ```
    /// use std::rc::Rc;
    /// use tulip::{BaseTransport, DatagramTransport};
    /// struct Nothing;
    /// impl tulip::DatagramProtocol for Nothing {}
    /// tulip::run(async {
    ///     let lp = tulip::get_running_loop()?;
    ///     let local = "127.0.0.1:0".parse().unwrap();
    ///     let (t, _) = lp.create_datagram_endpoint(|| Rc::new(Nothing), Some(local), None).await?;
    ///     assert_eq!(t.get_write_buffer_limits(), (16 * 1024, 64 * 1024));
    ///     t.set_write_buffer_limits(Some(8 * 1024), None)?;
    ///     assert_eq!(t.get_write_buffer_limits(), (2 * 1024, 8 * 1024));
    ///     assert!(t.set_write_buffer_limits(Some(1), Some(2)).is_err());
    ///     t.close();
    ///     Ok(())
    /// }).unwrap();
    /// ```
    fn set_write_buffer_limits(&self, high: Option<usize>, low: Option<usize>) -> Result<()>;

    /// The `(low, high)` water marks of the datagram queue.
    fn get_write_buffer_limits(&self) -> (usize, usize);

    /// The protocol (asyncio's `get_protocol()`), until `connection_lost`
    /// ran. The default has none.
    fn get_protocol(&self) -> Option<Rc<dyn DatagramProtocol>> {
        None
    }

    /// Switches protocols (asyncio's `set_protocol(protocol)`): the next
    /// datagram, error, flow-control call and `connection_lost` go to
    /// `protocol`, even when it is set from inside a callback of the old
    /// one; nothing is called now. After `connection_lost` the protocol is
    /// not kept. Fails for an endpoint that cannot switch (the default).
    fn set_protocol(&self, protocol: Rc<dyn DatagramProtocol>) -> Result<()> {
        let _ = protocol;
        Err(Error::runtime(format!(
            "{} cannot change its protocol: it does not implement set_protocol",
            std::any::type_name::<Self>()
        )))
    }
}

/// The write-buffer limits of a transport and the pause state that goes
/// with them: the transport half of asyncio's `_FlowControlMixin`.
///
/// A transport calls [`maybe_pause`](WriteLimits::maybe_pause) after adding
/// to its buffer and [`maybe_resume`](WriteLimits::maybe_resume) after
/// flushing; each returns true when the protocol must be told.
///
/// ```
/// use tulip::transports::WriteLimits;
/// let mut w = WriteLimits::default();
/// assert_eq!((w.low, w.high), (16 * 1024, 64 * 1024));
/// assert!(w.maybe_pause(64 * 1024 + 1));
/// assert!(!w.maybe_pause(100 * 1024)); // already paused
/// assert!(w.maybe_resume(16 * 1024));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteLimits {
    /// Resume the protocol at or below this many buffered bytes.
    pub low: usize,
    /// Pause the protocol above this many buffered bytes.
    pub high: usize,
    /// The protocol was told `pause_writing` and not yet `resume_writing`.
    pub paused: bool,
}

impl Default for WriteLimits {
    fn default() -> Self {
        WriteLimits {
            low: DEFAULT_HIGH_WATER / 4,
            high: DEFAULT_HIGH_WATER,
            paused: false,
        }
    }
}

impl WriteLimits {
    /// asyncio's `_set_write_buffer_limits`.
    pub fn set(&mut self, high: Option<usize>, low: Option<usize>) -> Result<()> {
        let high = match (high, low) {
            (Some(h), _) => h,
            (None, Some(l)) => l.saturating_mul(4),
            (None, None) => DEFAULT_HIGH_WATER,
        };
        let low = low.unwrap_or(high / 4);
        if low > high {
            return Err(Error::InvalidArgument(
                format!("high ({high}) must be >= low ({low}): raise high or lower low").into(),
            ));
        }
        self.high = high;
        self.low = low;
        Ok(())
    }

    /// True if the buffer of `size` bytes crossed `high`: set `paused` and
    /// call the protocol's `pause_writing`.
    pub fn maybe_pause(&mut self, size: usize) -> bool {
        if size > self.high && !self.paused {
            self.paused = true;
            return true;
        }
        false
    }

    /// True if the buffer of `size` bytes drained to `low`: clear `paused`
    /// and call the protocol's `resume_writing`.
    pub fn maybe_resume(&mut self, size: usize) -> bool {
        if self.paused && size <= self.low {
            self.paused = false;
            return true;
        }
        false
    }
}

/// The transport and protocol traits, for a glob import: their methods
/// (`write`, `close`, `pause_reading`, ...) need the traits in scope.
///
/// ```
/// use tulip::transports::prelude::*;
/// # fn f(t: &dyn Transport) { let _ = t.is_closing(); }
/// ```
pub mod prelude {
    pub use super::{
        BaseTransport, DatagramAddr, DatagramTransport, ReadTransport, Transport, WriteTransport,
    };
    pub use crate::protocols::{BufferedProtocol, DatagramProtocol, Protocol};
}
