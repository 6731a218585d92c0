//! UDP endpoints. Mirrors `_SelectorDatagramTransport` in
//! `Lib/asyncio/selector_events.py` and `create_datagram_endpoint` in
//! `base_events.py`.
//!
//! Each readiness edge receives datagrams (into the thread's shared read
//! buffer, 256 KiB) until `WouldBlock` and hands each
//! one to `datagram_received(&buf[..n], addr)`. `sendto` sends at once when
//! nothing is queued; a datagram the kernel refuses (`WouldBlock`) is
//! queued and sent by an edge-triggered writer. Send and receive errors go
//! to `error_received`: the endpoint stays open, as in asyncio. Starting
//! and closing are the shared `_SelectorTransport` plumbing of
//! `selector_transport.rs`, as for stream transports.
//!
//! # Invariants
//! - Datagrams are sent whole and in order; the queue holds copies of the
//!   datagrams not sent yet, and `buffer_size` is the sum of their lengths.
//! - The writer is registered exactly while the queue is non-empty.
//! - As for stream transports, the socket is closed only after both
//!   registrations are gone, and `connection_lost` is called once.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::rc::{Rc, Weak};

use crate::error::{Error, Result};
use crate::event_loop::EventLoop;
use crate::futures::Future;
use crate::protocols::DatagramProtocol;
use crate::selector_events::{put_read_buf, take_read_buf};
use crate::selector_transport::{SelectorTransport, TransportBase};
use crate::transports::{BaseTransport, DatagramTransport, ExtraInfo, WriteLimits};

/// How many datagrams one readiness edge receives before yielding.
const MAX_RECVS_PER_EDGE: usize = 64;

/// asyncio's `_SelectorDatagramTransport`: a UDP socket driven by the loop.
pub struct DatagramSocketTransport {
    /// The loop, socket, protocol and closing flags (asyncio's `_SelectorTransport`).
    base: TransportBase<UdpSocket, dyn DatagramProtocol>,
    /// The connected peer, if `remote_addr` was given.
    address: Option<SocketAddr>,
    buffer: RefCell<VecDeque<(Vec<u8>, Option<SocketAddr>)>>,
    buffer_size: Cell<usize>,
    limits: Cell<WriteLimits>,
    me: Weak<DatagramSocketTransport>,
}

impl EventLoop {
    /// asyncio's `create_datagram_endpoint(protocol_factory, local_addr,
    /// remote_addr)`: a UDP socket bound to `local_addr` (default: any
    /// address, of the remote's family) and connected to `remote_addr` if
    /// given. Returns once `connection_made` has been called.
    ///
    /// ```
    /// use std::{cell::RefCell, rc::Rc, net::SocketAddr};
    /// use tulip::BaseTransport;
    /// #[derive(Default)]
    /// struct Got(RefCell<Vec<u8>>);
    /// impl tulip::DatagramProtocol for Got {
    ///     fn datagram_received(&self, data: &[u8], _: SocketAddr) {
    ///         self.0.borrow_mut().extend_from_slice(data);
    ///     }
    /// }
    /// tulip::run(async {
    ///     let lp = tulip::get_running_loop()?;
    ///     let local = "127.0.0.1:0".parse().unwrap();
    ///     let (t, got) = lp.create_datagram_endpoint(|| Rc::new(Got::default()), Some(local), None).await?;
    ///     let addr = t.get_extra_info("sockname").and_then(|i| i.as_addr()).unwrap();
    ///     std::net::UdpSocket::bind("127.0.0.1:0")?.send_to(b"hi", addr)?;
    ///     tulip::sleep(0.05).await?;
    ///     assert_eq!(&*got.0.borrow(), b"hi");
    ///     t.close();
    ///     Ok(())
    /// }).unwrap();
    /// ```
    pub async fn create_datagram_endpoint<P, F>(
        &self,
        protocol_factory: F,
        local_addr: Option<SocketAddr>,
        remote_addr: Option<SocketAddr>,
    ) -> Result<(Rc<DatagramSocketTransport>, Rc<P>)>
    where
        P: DatagramProtocol + 'static,
        F: FnOnce() -> Rc<P>,
    {
        let local = match (local_addr, remote_addr) {
            (Some(l), _) => l,
            (None, Some(SocketAddr::V6(_))) => "[::]:0".parse().expect("literal"),
            (None, _) => "0.0.0.0:0".parse().expect("literal"),
        };
        let sock = UdpSocket::bind(local)?;
        sock.set_nonblocking(true)?;
        if let Some(r) = remote_addr {
            sock.connect(r)?;
        }
        let protocol = protocol_factory();
        let waiter: Future<()> = self.create_future();
        let t = DatagramSocketTransport::new(
            self,
            sock,
            protocol.clone(),
            remote_addr,
            Some(waiter.clone()),
        )?;
        waiter.await?;
        Ok((t, protocol))
    }
}

impl DatagramSocketTransport {
    /// Wraps a bound (and maybe connected) non-blocking UDP socket; calls
    /// `connection_made` on the next iteration and starts receiving.
    pub fn new(
        lp: &EventLoop,
        sock: UdpSocket,
        protocol: Rc<dyn DatagramProtocol>,
        address: Option<SocketAddr>,
        waiter: Option<Future<()>>,
    ) -> Result<Rc<DatagramSocketTransport>> {
        sock.set_nonblocking(true)?;
        let t = Rc::new_cyclic(|me| DatagramSocketTransport {
            base: TransportBase::new(lp, sock, protocol),
            address,
            buffer: RefCell::new(VecDeque::new()),
            buffer_size: Cell::new(0),
            limits: Cell::new(WriteLimits::default()),
            me: me.clone(),
        });
        t.schedule_start(waiter)?;
        Ok(t)
    }

    fn read_ready(&self) {
        let mut buf = take_read_buf();
        self.recv_loop(&mut buf);
        put_read_buf(buf);
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
        if let Some(me) = self.rc() {
            let _ = self.base.lp.call_soon(move || me.read_ready());
        }
    }

    fn send_one(&self, data: &[u8], addr: Option<SocketAddr>) -> io::Result<usize> {
        match &*self.base.sock.borrow() {
            Some(s) => match (addr, self.address) {
                (None, _) | (Some(_), Some(_)) => s.send(data),
                (Some(a), None) => s.send_to(data, a),
            },
            None => Err(io::Error::from(io::ErrorKind::NotConnected)),
        }
    }

    fn write_ready(&self) {
        loop {
            let front = self.buffer.borrow_mut().pop_front();
            let Some((data, addr)) = front else { break };
            match self.send_one(&data, addr) {
                Ok(_) => self.buffer_size.set(self.buffer_size.get() - data.len()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.buffer.borrow_mut().push_front((data, addr));
                    return;
                }
                Err(e) => {
                    self.buffer_size.set(self.buffer_size.get() - data.len());
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
            if let Some(p) = self.base.protocol() {
                p.resume_writing();
            }
        }
        self.base.remove_writer();
        if self.base.closing.get() {
            self.call_connection_lost(None);
        }
    }
}

impl SelectorTransport for DatagramSocketTransport {
    type Sock = UdpSocket;
    type Proto = dyn DatagramProtocol;

    fn base(&self) -> &TransportBase<UdpSocket, dyn DatagramProtocol> {
        &self.base
    }

    fn rc(&self) -> Option<Rc<DatagramSocketTransport>> {
        self.me.upgrade()
    }

    fn connection_made(this: Rc<DatagramSocketTransport>, protocol: &Rc<dyn DatagramProtocol>) {
        protocol.connection_made(this);
    }

    fn connection_lost(protocol: &dyn DatagramProtocol, exc: Option<Error>) {
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
        let sock = self.base.sock.borrow();
        let s = sock.as_ref()?;
        match name {
            "sockname" => s.local_addr().ok().map(ExtraInfo::Addr),
            "peername" => self.address.map(ExtraInfo::Addr),
            "socket" => Some(ExtraInfo::Fd(s.as_raw_fd())),
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
    fn sendto(&self, data: &[u8], addr: Option<SocketAddr>) -> Result<()> {
        if let (Some(a), Some(peer)) = (addr, self.address) {
            if a != peer {
                return Err(Error::InvalidArgument(
                    format!("invalid address: must be None or {peer}").into(),
                ));
            }
        }
        if addr.is_none() && self.address.is_none() {
            return Err(Error::InvalidArgument(
                "an address is needed: the endpoint is not connected".into(),
            ));
        }
        if self.base.conn_lost.get() > 0 {
            self.base.conn_lost.set(self.base.conn_lost.get() + 1);
            return Ok(());
        }
        if self.buffer.borrow().is_empty() {
            match self.send_one(data, addr) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !self.base.writer_registered.get() {
                        if let Some(me) = self.rc() {
                            let fd = self.base.fd;
                            self.base.lp.add_writer_edge(fd, move || me.write_ready())?;
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
        self.buffer_size.set(self.buffer_size.get() + data.len());
        let mut l = self.limits.get();
        if l.maybe_pause(self.buffer_size.get()) {
            self.limits.set(l);
            if let Some(p) = self.base.protocol() {
                p.pause_writing();
            }
        }
        Ok(())
    }

    fn abort(&self) {
        self.force_close(None);
    }

    fn get_write_buffer_size(&self) -> usize {
        self.buffer_size.get()
    }
}

impl fmt::Debug for DatagramSocketTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatagramSocketTransport")
            .field("fd", &self.base.fd)
            .field("peer", &self.address)
            .field("closing", &self.base.closing.get())
            .field("queued", &self.buffer.borrow().len())
            .finish()
    }
}
