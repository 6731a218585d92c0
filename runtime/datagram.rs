//! UDP endpoints. Mirrors `_SelectorDatagramTransport` in
//! `Lib/asyncio/selector_events.py` and `create_datagram_endpoint` in
//! `base_events.py`.
//!
//! Each readiness edge receives datagrams (into the thread's shared read
//! buffer, 256 KiB) until `WouldBlock` and hands each
//! one to `datagram_received(&buf[..n], addr)`. `sendto` sends at once when
//! nothing is queued; a datagram the kernel refuses (`WouldBlock`) is
//! queued and sent by an edge-triggered writer. Send and receive errors go
//! to `error_received`: the endpoint stays open, as in asyncio.
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
use std::os::fd::{AsRawFd, RawFd};
use std::rc::{Rc, Weak};

use crate::error::{Error, Result};
use crate::event_loop::EventLoop;
use crate::futures::Future;
use crate::protocols::DatagramProtocol;
use crate::selector_events::{put_read_buf, take_read_buf};
use crate::transports::{BaseTransport, DatagramTransport, ExtraInfo, WriteLimits};

/// How many datagrams one readiness edge receives before yielding.
const MAX_RECVS_PER_EDGE: usize = 64;

/// asyncio's `_SelectorDatagramTransport`: a UDP socket driven by the loop.
pub struct DatagramSocketTransport {
    lp: EventLoop,
    fd: RawFd,
    sock: RefCell<Option<UdpSocket>>,
    /// The connected peer, if `remote_addr` was given.
    address: Option<SocketAddr>,
    protocol: RefCell<Option<Rc<dyn DatagramProtocol>>>,
    protocol_connected: Cell<bool>,
    buffer: RefCell<VecDeque<(Vec<u8>, Option<SocketAddr>)>>,
    buffer_size: Cell<usize>,
    limits: Cell<WriteLimits>,
    closing: Cell<bool>,
    conn_lost: Cell<u32>,
    writer_registered: Cell<bool>,
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
            lp: lp.clone(),
            fd: sock.as_raw_fd(),
            sock: RefCell::new(Some(sock)),
            address,
            protocol: RefCell::new(Some(protocol)),
            protocol_connected: Cell::new(false),
            buffer: RefCell::new(VecDeque::new()),
            buffer_size: Cell::new(0),
            limits: Cell::new(WriteLimits::default()),
            closing: Cell::new(false),
            conn_lost: Cell::new(0),
            writer_registered: Cell::new(false),
            me: me.clone(),
        });
        let t2 = t.clone();
        let _ = lp.call_soon(move || t2.start(waiter))?;
        Ok(t)
    }

    fn start(self: Rc<Self>, waiter: Option<Future<()>>) {
        // As for stream transports: the rest runs even if connection_made panics.
        let _rest = StartRest {
            t: self.clone(),
            waiter,
        };
        if self.conn_lost.get() == 0 {
            let proto = self.protocol.borrow().clone();
            if let Some(p) = proto {
                self.protocol_connected.set(true);
                p.connection_made(self.clone());
            }
        }
    }

    fn add_reader(&self) {
        if self.conn_lost.get() > 0 || self.closing.get() {
            return;
        }
        let me = self.rc();
        let res = self.lp.add_reader_edge(self.fd, move || me.read_ready());
        if let Err(e) = res {
            self.force_close(Some(e));
        }
    }

    fn rc(&self) -> Rc<DatagramSocketTransport> {
        self.me.upgrade().expect("transport alive while in use")
    }

    fn protocol(&self) -> Option<Rc<dyn DatagramProtocol>> {
        self.protocol.borrow().clone()
    }

    fn read_ready(&self) {
        let mut buf = take_read_buf();
        self.recv_loop(&mut buf);
        put_read_buf(buf);
    }

    fn recv_loop(&self, buf: &mut [u8]) {
        for _ in 0..MAX_RECVS_PER_EDGE {
            if self.conn_lost.get() > 0 || self.closing.get() {
                return;
            }
            let res = match &*self.sock.borrow() {
                Some(s) => s.recv_from(buf),
                None => return,
            };
            match res {
                Ok((k, addr)) => {
                    if let Some(p) = self.protocol() {
                        p.datagram_received(&buf[..k], addr);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    if let Some(p) = self.protocol() {
                        p.error_received(e.into());
                    }
                }
            }
        }
        // Fairness: the rest on the next iteration.
        let me = self.rc();
        let _ = self.lp.call_soon(move || me.read_ready());
    }

    fn send_one(&self, data: &[u8], addr: Option<SocketAddr>) -> io::Result<usize> {
        match &*self.sock.borrow() {
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
                    if let Some(p) = self.protocol() {
                        p.error_received(e.into());
                    }
                    return;
                }
            }
        }
        let mut l = self.limits.get();
        if l.maybe_resume(self.buffer_size.get()) {
            self.limits.set(l);
            if let Some(p) = self.protocol() {
                p.resume_writing();
            }
        }
        if self.writer_registered.replace(false) {
            let _ = self.lp.remove_writer(self.fd);
        }
        if self.closing.get() {
            self.call_connection_lost(None);
        }
    }

    fn force_close(&self, exc: Option<Error>) {
        if self.conn_lost.get() > 0 {
            return;
        }
        self.buffer.borrow_mut().clear();
        self.buffer_size.set(0);
        if self.writer_registered.replace(false) {
            let _ = self.lp.remove_writer(self.fd);
        }
        if !self.closing.replace(true) {
            let _ = self.lp.remove_reader(self.fd);
        }
        self.conn_lost.set(1);
        if let Some(me) = self.me.upgrade() {
            let _ = self.lp.call_soon(move || me.call_connection_lost(exc));
        }
    }

    fn call_connection_lost(&self, exc: Option<Error>) {
        self.conn_lost.set(self.conn_lost.get().max(1));
        self.closing.set(true);
        let _ = self.lp.remove_reader(self.fd);
        if self.writer_registered.replace(false) {
            let _ = self.lp.remove_writer(self.fd);
        }
        let proto = self.protocol.borrow_mut().take();
        if let Some(p) = proto {
            if self.protocol_connected.get() {
                p.connection_lost(exc);
            }
        }
        drop(self.sock.borrow_mut().take());
    }
}

/// Starts receiving and completes the waiter, also if `connection_made` panics.
struct StartRest {
    t: Rc<DatagramSocketTransport>,
    waiter: Option<Future<()>>,
}

impl Drop for StartRest {
    fn drop(&mut self) {
        self.t.add_reader();
        if let Some(w) = self.waiter.take() {
            if !w.done() {
                let _ = w.set_result(());
            }
        }
    }
}

impl BaseTransport for DatagramSocketTransport {
    fn get_extra_info(&self, name: &str) -> Option<ExtraInfo> {
        let sock = self.sock.borrow();
        let s = sock.as_ref()?;
        match name {
            "sockname" => s.local_addr().ok().map(ExtraInfo::Addr),
            "peername" => self.address.map(ExtraInfo::Addr),
            "socket" => Some(ExtraInfo::Fd(s.as_raw_fd())),
            _ => None,
        }
    }

    fn is_closing(&self) -> bool {
        self.closing.get()
    }

    fn close(&self) {
        if self.closing.replace(true) {
            return;
        }
        let _ = self.lp.remove_reader(self.fd);
        if self.buffer.borrow().is_empty() {
            self.conn_lost.set(self.conn_lost.get() + 1);
            if let Some(me) = self.me.upgrade() {
                let _ = self.lp.call_soon(move || me.call_connection_lost(None));
            }
        }
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
        if self.conn_lost.get() > 0 {
            self.conn_lost.set(self.conn_lost.get() + 1);
            return Ok(());
        }
        if self.buffer.borrow().is_empty() {
            match self.send_one(data, addr) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !self.writer_registered.replace(true) {
                        let me = self.rc();
                        self.lp.add_writer_edge(self.fd, move || me.write_ready())?;
                    }
                }
                Err(e) => {
                    if let Some(p) = self.protocol() {
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
            if let Some(p) = self.protocol() {
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
            .field("fd", &self.fd)
            .field("peer", &self.address)
            .field("closing", &self.closing.get())
            .field("queued", &self.buffer.borrow().len())
            .finish()
    }
}
