//! The datagram transport: [`DatagramSocketTransport`] over a
//! [`DatagramSocket`] (UDP or Unix). Mirrors `_SelectorDatagramTransport`
//! in `Lib/asyncio/selector_events.py`; the `create_datagram_endpoint`
//! functions that make it are in the parent module,
//! [`datagram`](crate::datagram).
//!
//! Each readiness edge receives datagrams (into the thread's shared read
//! buffer, 256 KiB) until `WouldBlock`, or at most `MAX_RECVS_PER_EDGE`
//! (64, then the rest on the next iteration), and hands each
//! one to `datagram_received(&buf[..n], addr)`. `sendto` sends at once when
//! nothing is queued; a datagram the kernel refuses (`WouldBlock`) is
//! queued and sent by an edge-triggered writer. Send and receive errors go
//! to `error_received`: the endpoint stays open, as in asyncio. Starting
//! and closing are the shared `_SelectorTransport` plumbing of
//! `selector_transport.rs`, as for stream transports.
//!
//! # Invariants
//! - Datagrams are sent whole and in order; the queue holds copies of the
//!   datagrams not sent yet, and `buffer_size` is the sum of their lengths
//!   plus `HEADER_SIZE` (8) for each.
//! - The writer is registered while the queue is non-empty; it is removed
//!   once the queue is empty, by that run of the writer or, after a failed
//!   send, by the next one (scheduled at once, as asyncio's level-triggered
//!   selector calls `_sendto_ready` again).
//! - As for stream transports, the socket is closed only after both
//!   registrations are gone, and `connection_lost` is called once: the
//!   connection is finished by one call only (the writer leaves a `close()`
//!   or `abort()` made from `resume_writing` to the call it scheduled).
//! - Every address handed to the protocol or to the socket is of the
//!   socket's kind (IP or Unix): `sendto` refuses an address of the other
//!   kind. Between IPv4 and IPv6 the kernel decides, and its refusal goes
//!   to `error_received`, as in asyncio.
//! - A protocol callback that panics while receiving goes to the loop's
//!   exception handler, and the endpoint reads on in the next iteration
//!   (asyncio's selector reports the socket again): datagrams already
//!   queued are not left waiting for a new edge.
//! - `pause_writing` is called when `buffer_size` grows above the
//!   high-water mark (`set_write_buffer_limits`, 64 KiB by default; also
//!   when new marks put it above), and `resume_writing` when the writer
//!   drains it to the low-water mark: once per crossing, as asyncio's
//!   `_FlowControlMixin`.
//! - A panicking `pause_writing`/`resume_writing` is reported and the
//!   endpoint goes on (asyncio's `_maybe_pause_protocol`): `sendto` does
//!   not unwind, and a closing endpoint still flushes and loses its
//!   connection.
//!
//! # Deviations from asyncio
//! - `sendto(data, None)` on an endpoint with no remote address is an
//!   `Error::InvalidArgument`, and the endpoint stays open. asyncio calls
//!   `socket.sendto(data, None)`, whose `TypeError` goes to `_fatal_error`,
//!   which closes the endpoint.
//! - An endpoint over a socket that was connected before it was wrapped
//!   (`create_datagram_endpoint_sock`, or `DatagramSocketTransport::new`
//!   without an address) takes its peer as its remote address: `sendto` to
//!   another address is an `Error::InvalidArgument`, as on an endpoint made
//!   with a `remote_addr`. asyncio has no `_address` there. It skips the
//!   check and `send()`s to the peer, ignoring the address.
//! - Once `connection_lost` is scheduled (`close()` with nothing queued,
//!   `abort()`, a fatal error), `sendto` drops the datagram on every
//!   endpoint. asyncio drops it only on an endpoint with a remote address.
//!   On the others it still sends on the closing socket until
//!   `_call_connection_lost` closes it.
//! - No `pause_reading`/`resume_reading`: asyncio's
//!   `_SelectorDatagramTransport` inherits them from `_SelectorTransport`,
//!   but `DatagramTransport` does not promise them, and neither does tulip.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::UdpSocket;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::{Rc, Weak};

use crate::error::{panic_message, Error, Result};
use crate::event_loop::{EventLoop, ExceptionContext, Interrupt};
use crate::futures::Future;
use crate::protocols::DatagramProtocol;
use crate::reactor::Side;
use crate::selector_events::{put_read_buf, take_read_buf};
use crate::selector_transport::{SelectorTransport, TransportBase};
use crate::transports::{BaseTransport, DatagramAddr, DatagramTransport, ExtraInfo, WriteLimits};

/// How many datagrams one readiness edge receives before yielding.
const MAX_RECVS_PER_EDGE: usize = 64;

/// What each queued datagram adds to the write buffer size on top of its
/// bytes (asyncio's `_header_size`, 3.12+): the high-water mark bounds a
/// queue of tiny, or empty, datagrams too.
const HEADER_SIZE: usize = 8;

// ===== DatagramSocket =====

/// The socket of a [`DatagramSocketTransport`]: UDP or Unix datagrams.
#[derive(Debug)]
pub enum DatagramSocket {
    /// A UDP socket.
    Udp(UdpSocket),
    /// A Unix-domain datagram socket.
    Unix(UnixDatagram),
}

impl From<UdpSocket> for DatagramSocket {
    fn from(s: UdpSocket) -> Self {
        DatagramSocket::Udp(s)
    }
}

impl From<UnixDatagram> for DatagramSocket {
    fn from(s: UnixDatagram) -> Self {
        DatagramSocket::Unix(s)
    }
}

impl AsRawFd for DatagramSocket {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            DatagramSocket::Udp(s) => s.as_raw_fd(),
            DatagramSocket::Unix(s) => s.as_raw_fd(),
        }
    }
}

impl DatagramSocket {
    fn set_nonblocking(&self) -> io::Result<()> {
        match self {
            DatagramSocket::Udp(s) => s.set_nonblocking(true),
            DatagramSocket::Unix(s) => s.set_nonblocking(true),
        }
    }

    fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, DatagramAddr)> {
        match self {
            DatagramSocket::Udp(s) => s.recv_from(buf).map(|(n, a)| (n, a.into())),
            DatagramSocket::Unix(s) => s.recv_from(buf).map(|(n, a)| (n, a.into())),
        }
    }

    /// Sends to the connected peer.
    fn send(&self, data: &[u8]) -> io::Result<usize> {
        match self {
            DatagramSocket::Udp(s) => s.send(data),
            DatagramSocket::Unix(s) => s.send(data),
        }
    }

    /// Sends to `addr`, which `sendto` checked is of the socket's family.
    fn send_to(&self, data: &[u8], addr: &DatagramAddr) -> io::Result<usize> {
        match (self, addr) {
            (DatagramSocket::Udp(s), DatagramAddr::Inet(a)) => s.send_to(data, a),
            (DatagramSocket::Unix(s), DatagramAddr::Unix(a)) => s.send_to_addr(data, a),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot send to {addr}: it is not of the socket's address family"),
            )),
        }
    }

    /// True if `addr` is of this socket's family.
    fn fits(&self, addr: &DatagramAddr) -> bool {
        matches!(
            (self, addr),
            (DatagramSocket::Udp(_), DatagramAddr::Inet(_))
                | (DatagramSocket::Unix(_), DatagramAddr::Unix(_))
        )
    }

    /// The connected peer (getpeername), if the socket is connected.
    fn peer_addr(&self) -> Option<DatagramAddr> {
        match self {
            DatagramSocket::Udp(s) => s.peer_addr().ok().map(DatagramAddr::from),
            DatagramSocket::Unix(s) => s.peer_addr().ok().map(DatagramAddr::from),
        }
    }

    fn sockname(&self) -> Option<ExtraInfo> {
        match self {
            DatagramSocket::Udp(s) => s.local_addr().ok().map(ExtraInfo::Addr),
            DatagramSocket::Unix(s) => s.local_addr().ok().map(ExtraInfo::UnixAddr),
        }
    }
}

// ===== DatagramSocketTransport =====

/// asyncio's `_SelectorDatagramTransport`: a UDP or Unix datagram socket
/// driven by the loop.
pub struct DatagramSocketTransport {
    /// The loop, socket, protocol and closing flags (asyncio's `_SelectorTransport`).
    base: TransportBase<DatagramSocket, Rc<dyn DatagramProtocol>>,
    /// Where `sendto(data, None)` sends (asyncio's `_address`): the
    /// `remote_addr`, or the peer of a socket that was connected already.
    address: Option<DatagramAddr>,
    /// Whether the socket is connected (asyncio's `_extra['peername']`):
    /// it then sends with `send(2)`. An endpoint that allows broadcast has
    /// an `address` but no connection, and sends to it with `sendto(2)`.
    connected: bool,
    /// asyncio's `_extra['sockname']`, taken when the transport is made:
    /// still known once the socket is closed.
    sockname: Option<ExtraInfo>,
    /// Whether the socket is a Unix one (for error messages once it is gone).
    unix: bool,
    buffer: RefCell<VecDeque<(Vec<u8>, Option<DatagramAddr>)>>,
    buffer_size: Cell<usize>,
    limits: Cell<WriteLimits>,
    me: Weak<DatagramSocketTransport>,
}

impl DatagramSocketTransport {
    /// Wraps a bound (and maybe connected) datagram socket: makes it
    /// non-blocking, then calls `connection_made` on the next iteration and
    /// starts receiving. `address` is where `sendto(data, None)` sends
    /// (asyncio's `address`): with `send(2)` if the socket is connected,
    /// else with `sendto(2)`. With `address` `None`, a socket
    /// that is already connected has its peer asked of it (getpeername, as
    /// asyncio's `_extra['peername']`), so `sendto(data, None)` sends there.
    pub fn new(
        lp: &EventLoop,
        sock: impl Into<DatagramSocket>,
        protocol: Rc<dyn DatagramProtocol>,
        address: Option<DatagramAddr>,
        waiter: Option<Future<()>>,
    ) -> Result<Rc<DatagramSocketTransport>> {
        let sock = sock.into();
        sock.set_nonblocking()?;
        let unix = matches!(sock, DatagramSocket::Unix(_));
        // asyncio's `sock=` path passes no address, and the transport still
        // sends to the peer of a connected socket and reports it.
        let peer = sock.peer_addr();
        let connected = peer.is_some();
        let address = address.or(peer);
        if let Some(a) = &address {
            if !sock.fits(a) {
                return Err(Error::invalid_argument(format!(
                    "the peer address {a} is not of the socket's family: give an IP address for a UDP socket, a path for a Unix one"
                )));
            }
        }
        let sockname = sock.sockname();
        let t = Rc::new_cyclic(|me| DatagramSocketTransport {
            base: TransportBase::new(lp, sock, protocol),
            address,
            connected,
            sockname,
            unix,
            buffer: RefCell::new(VecDeque::new()),
            buffer_size: Cell::new(0),
            limits: Cell::new(WriteLimits::default()),
            me: me.clone(),
        });
        t.schedule_start(waiter)?;
        t.register_fd();
        Ok(t)
    }

    fn read_ready(&self) {
        let mut buf = take_read_buf();
        let rearm = ReadAgainOnUnwind(self);
        self.recv_loop(&mut buf);
        drop(rearm);
        put_read_buf(buf);
    }

    /// Reads on in the next iteration, without waiting for a new edge.
    fn read_again(&self) {
        if let Some(me) = self.rc() {
            let _ = self.base.lp.call_soon(move || me.read_ready());
        }
    }

    fn recv_loop(&self, buf: &mut [u8]) {
        for _ in 0..MAX_RECVS_PER_EDGE {
            if self.base.conn_lost.get() > 0 || self.base.closing.get() {
                return;
            }
            let res = match &*self.base.sock.borrow() {
                Some(s) => s.recv_from(buf),
                None => return,
            };
            match res {
                Ok((k, addr)) => {
                    if let Some(p) = self.base.protocol() {
                        p.datagram_received(&buf[..k], addr);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    if let Some(p) = self.base.protocol() {
                        p.error_received(e.into());
                    }
                }
            }
        }
        // Fairness: the rest on the next iteration.
        self.read_again();
    }

    /// asyncio's `if self._extra['peername']: send(data) else:
    /// sendto(data, addr)`, where `addr` defaults to `_address`.
    fn send_one(&self, data: &[u8], addr: Option<&DatagramAddr>) -> io::Result<usize> {
        match &*self.base.sock.borrow() {
            Some(s) => match addr.or(self.address.as_ref()) {
                Some(a) if !self.connected => s.send_to(data, a),
                _ => s.send(data),
            },
            None => Err(io::Error::from(io::ErrorKind::NotConnected)),
        }
    }

    /// asyncio's `_sendto_ready` returns after a failed send, and its
    /// level-triggered selector calls it again on the next iteration for
    /// the datagrams still queued (or, with none left, to remove the writer
    /// and finish a `close()`). An edge is reported once: this schedules
    /// that next run, which does nothing if the writer is gone by then
    /// (`abort()`).
    fn write_again(&self) {
        if let Some(me) = self.rc() {
            let _ = self.base.lp.call_soon(move || {
                if me.base.writer_registered.get() {
                    me.write_ready();
                }
            });
        }
    }

    /// Calls a flow-control method of the protocol; a panic is reported
    /// and the endpoint goes on (asyncio's `_maybe_pause_protocol` and
    /// `_maybe_resume_protocol`), so that it never unwinds through
    /// `sendto`, nor out of the writer before a closing endpoint's
    /// `connection_lost`. `Interrupt` (Ctrl-C) goes on unwinding.
    fn flow_call(&self, what: &str, f: fn(&dyn DatagramProtocol)) {
        let Some(p) = self.base.protocol() else {
            return;
        };
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| f(&*p))) {
            if payload.is::<Interrupt>() {
                std::panic::resume_unwind(payload);
            }
            self.base.lp.call_exception_handler(&ExceptionContext {
                message: format!("protocol.{what}() failed"),
                error: Some(Error::Panic(panic_message(&*payload))),
                transport: Some(format!("{self:?}")),
                ..Default::default()
            });
        }
    }

    fn write_ready(&self) {
        loop {
            let front = self.buffer.borrow_mut().pop_front();
            let Some((data, addr)) = front else { break };
            match self.send_one(&data, addr.as_ref()) {
                Ok(_) => self
                    .buffer_size
                    .set(self.buffer_size.get() - (data.len() + HEADER_SIZE)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Try again on the next edge; the protocol may still
                    // resume now, as asyncio's `break` does.
                    self.buffer.borrow_mut().push_front((data, addr));
                    break;
                }
                Err(e) => {
                    self.buffer_size
                        .set(self.buffer_size.get() - (data.len() + HEADER_SIZE));
                    // Scheduled first, so that a panicking error_received
                    // does not strand the rest either.
                    self.write_again();
                    if let Some(p) = self.base.protocol() {
                        p.error_received(e.into());
                    }
                    return;
                }
            }
        }
        let mut l = self.limits.get();
        if l.maybe_resume(self.buffer_size.get()) {
            self.limits.set(l);
            self.flow_call("resume_writing", |p| p.resume_writing());
        }
        // What the kernel refused waits for the next edge, and
        // resume_writing may have queued a datagram (its `sendto` found the
        // writer registered and did not add it again): asyncio removes the
        // writer only if the buffer is empty. resume_writing may also have
        // closed or aborted the endpoint: then `connection_lost` is
        // scheduled already, and the writer is gone. Finishing the
        // connection here as well (as asyncio's `_sendto_ready` does,
        // calling `_call_connection_lost` a second time) would close the
        // socket now, and leave the scheduled call to run on a closed fd
        // number, removing the reader of whatever socket has it by then (N4).
        if !self.buffer.borrow().is_empty() || self.base.conn_lost.get() > 0 {
            return;
        }
        self.base.remove_writer();
        if self.base.closing.get() {
            self.call_connection_lost(None);
        }
    }
}

/// asyncio's `_read_ready` lets what `datagram_received` or
/// `error_received` raises go to the loop's exception handler, and its
/// level-triggered selector then reports the socket again for the datagrams
/// still queued. An edge is reported once: when a protocol callback panics
/// out of [`DatagramSocketTransport::read_ready`], this guard schedules the
/// next read itself, so the queued datagrams do not wait for another one
/// to arrive.
struct ReadAgainOnUnwind<'a>(&'a DatagramSocketTransport);

impl Drop for ReadAgainOnUnwind<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.read_again();
        }
    }
}

impl SelectorTransport for DatagramSocketTransport {
    type Sock = DatagramSocket;
    type Proto = Rc<dyn DatagramProtocol>;

    fn base(&self) -> &TransportBase<DatagramSocket, Rc<dyn DatagramProtocol>> {
        &self.base
    }

    fn rc(&self) -> Option<Rc<DatagramSocketTransport>> {
        self.me.upgrade()
    }

    fn connection_made(this: Rc<DatagramSocketTransport>, protocol: &Rc<dyn DatagramProtocol>) {
        protocol.connection_made(this);
    }

    fn connection_lost(protocol: &Rc<dyn DatagramProtocol>, exc: Option<Error>) {
        protocol.connection_lost(exc);
    }

    fn wants_reader(&self) -> bool {
        self.base.conn_lost.get() == 0 && !self.base.closing.get()
    }

    fn read_ready(&self) {
        DatagramSocketTransport::read_ready(self);
    }

    fn write_buffer_is_empty(&self) -> bool {
        self.buffer.borrow().is_empty()
    }

    fn clear_write_buffer(&self) {
        self.buffer.borrow_mut().clear();
        self.buffer_size.set(0);
    }
}

impl BaseTransport for DatagramSocketTransport {
    fn get_extra_info(&self, name: &str) -> Option<ExtraInfo> {
        match name {
            "sockname" => self.sockname.clone(),
            // asyncio's getpeername(): none for an endpoint that allows
            // broadcast, whose remote address is not connected to.
            "peername" => self
                .address
                .as_ref()
                .filter(|_| self.connected)
                .map(|a| match a {
                    DatagramAddr::Inet(a) => ExtraInfo::Addr(*a),
                    DatagramAddr::Unix(a) => ExtraInfo::UnixAddr(a.clone()),
                }),
            "socket" => self.base.sock_fd().map(ExtraInfo::Fd),
            _ => None,
        }
    }

    fn is_closing(&self) -> bool {
        self.base.closing.get()
    }

    fn close(&self) {
        self.close_transport();
    }
}

impl DatagramTransport for DatagramSocketTransport {
    fn sendto(&self, data: &[u8], addr: Option<DatagramAddr>) -> Result<()> {
        if let (Some(a), Some(peer)) = (&addr, &self.address) {
            if a != peer {
                return Err(Error::InvalidArgument(
                    format!("invalid address {a}: must be None or {peer}, the address this endpoint sends to").into(),
                ));
            }
        }
        if let Some(a) = &addr {
            if a.as_inet().is_some() == self.unix {
                let (want, got) = match self.unix {
                    true => ("a Unix path", "an IP address"),
                    false => ("an IP address", "a Unix path"),
                };
                return Err(Error::InvalidArgument(
                    format!("invalid address {a}: this endpoint sends to {want}, not {got}").into(),
                ));
            }
        }
        if addr.is_none() && self.address.is_none() {
            return Err(Error::InvalidArgument(
                "an address is needed: the endpoint is not connected; pass one to sendto, or create the endpoint with a remote_addr".into(),
            ));
        }
        if self.base.conn_lost.get() > 0 {
            self.base.conn_lost.set(self.base.conn_lost.get() + 1);
            return Ok(());
        }
        if self.buffer.borrow().is_empty() {
            match self.send_one(data, addr.as_ref()) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !self.base.writer_registered.get() {
                        if let Some(me) = self.rc() {
                            let fd = self.base.fd;
                            self.base
                                .lp
                                .add_io_edge(fd, Side::Write, move || me.write_ready())?;
                            self.base.writer_registered.set(true);
                        }
                    }
                }
                Err(e) => {
                    if let Some(p) = self.base.protocol() {
                        p.error_received(e.into());
                    }
                    return Ok(());
                }
            }
        }
        self.buffer.borrow_mut().push_back((data.to_vec(), addr));
        self.buffer_size
            .set(self.buffer_size.get() + data.len() + HEADER_SIZE);
        let mut l = self.limits.get();
        if l.maybe_pause(self.buffer_size.get()) {
            self.limits.set(l);
            self.flow_call("pause_writing", |p| p.pause_writing());
        }
        Ok(())
    }

    fn abort(&self) {
        self.force_close(None);
    }

    fn get_write_buffer_size(&self) -> usize {
        self.buffer_size.get()
    }

    /// asyncio's `_FlowControlMixin.set_write_buffer_limits`: the new marks,
    /// then `_maybe_pause_protocol` (a queue already above the new `high`
    /// pauses the protocol at once; resuming waits for the writer).
    fn set_write_buffer_limits(&self, high: Option<usize>, low: Option<usize>) -> Result<()> {
        let mut l = self.limits.get();
        l.set(high, low)?;
        let pause = l.maybe_pause(self.buffer_size.get());
        self.limits.set(l);
        if pause {
            self.flow_call("pause_writing", |p| p.pause_writing());
        }
        Ok(())
    }

    fn get_write_buffer_limits(&self) -> (usize, usize) {
        let l = self.limits.get();
        (l.low, l.high)
    }

    fn get_protocol(&self) -> Option<Rc<dyn DatagramProtocol>> {
        self.base.protocol()
    }

    fn set_protocol(&self, protocol: Rc<dyn DatagramProtocol>) -> Result<()> {
        self.base.set_protocol(protocol);
        Ok(())
    }
}

impl fmt::Debug for DatagramSocketTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatagramSocketTransport")
            .field("fd", &self.base.fd)
            .field("peer", &self.address.as_ref().map(|a| a.to_string()))
            .field("closing", &self.base.closing.get())
            .field("queued", &self.buffer.borrow().len())
            .finish()
    }
}
