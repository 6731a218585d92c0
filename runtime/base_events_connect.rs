//! Making connections: `create_connection` with asyncio's Happy Eyeballs
//! options, and its `sock=` and Unix variants, and
//! `connect_accepted_socket`. Mirrors `create_connection`,
//! `_connect_sock`, `_interleave_addrinfos`, `connect_accepted_socket` and
//! `_create_connection_transport` in `Lib/asyncio/base_events.py`, and
//! `create_unix_connection` in `unix_events.py`.
//!
//! A host may have several addresses (IPv6 and IPv4, several of each).
//! Without options, as in asyncio, they are tried one after the other, in
//! the resolver's order. With a `happy_eyeballs_delay` (RFC 8305), the
//! addresses are first interleaved by family, then raced with
//! [`staggered_race`]: a new attempt
//! starts each time the previous one fails, or after the delay; the first
//! connected socket wins and the other attempts are cancelled, which closes
//! their sockets. When every address fails, the error names each failure.
//!
//! A [`BufferedProtocol`] has functions of its own (asyncio passes either
//! kind to the same function): `create_connection_buffered` (with
//! [`ConnectOptions`]), `create_connection_buffered_sock`,
//! `create_unix_connection_buffered` and
//! `connect_accepted_socket_buffered`. Both kinds end in
//! `connection_transport`, which takes the kind as a `fn(Rc<P>) ->
//! StreamProtocol`.
//!
//! With a `local_addr`, each attempt's socket is bound to it before it
//! connects (`sys::tcp_connect_from`: socket, bind, non-blocking connect),
//! and addresses of the other family are left out beforehand.
//!
//! # Invariants
//! - At most one socket comes out of the attempts; every other socket an
//!   attempt opened is closed before `create_connection` returns (or, if
//!   its future is dropped, once the cancelled attempts run).
//! - A transport that `create_connection` made but does not return (the
//!   wait for `connection_made` failed, was cancelled, or was dropped) is
//!   closed.
//! - The error of a failed `create_connection` holds every address's OS
//!   error (asyncio's combined `OSError`), or all of them as a group with
//!   `all_errors`; a cancel of the caller stays `Cancelled`.
//! - With `local_addr`, every socket an attempt opens is bound to it before
//!   its connect starts, and no attempt targets an address of the other
//!   family.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::event_loop::{EventLoop, LoopRef};
use crate::futures::Future;
use crate::protocols::{BufferedProtocol, Protocol};
use crate::selector_events::{SocketTransport, StreamProtocol, StreamSocket};
use crate::staggered::staggered_race;
use crate::transports::BaseTransport;

/// The delay RFC 8305 recommends between connection attempts (250 ms), for
/// [`ConnectOptions::happy_eyeballs_delay`].
pub const RECOMMENDED_HAPPY_EYEBALLS_DELAY: f64 = 0.25;

/// The keyword arguments of asyncio's `create_connection` that choose
/// which addresses of a host are tried: `family`; how they are tried:
/// `happy_eyeballs_delay`, `interleave` and `all_errors`; and where the
/// connection comes from: `local_addr`.
///
/// The default is asyncio's: addresses of any family (`AF_UNSPEC`), no
/// Happy Eyeballs (addresses are tried one after the other, in order), no
/// interleaving, one combined error, and a local address the kernel picks.
///
/// ```
/// use tulip::ConnectOptions;
/// let opts = ConnectOptions::new()
///     .happy_eyeballs_delay(tulip::base_events_connect::RECOMMENDED_HAPPY_EYEBALLS_DELAY)
///     .all_errors(true);
/// assert_ne!(opts, ConnectOptions::default());
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConnectOptions {
    happy_eyeballs_delay: Option<f64>,
    interleave: Option<usize>,
    all_errors: bool,
    local_addr: Option<SocketAddr>,
    family: crate::AddressFamily,
}

impl ConnectOptions {
    /// asyncio's defaults (see the type's docs).
    pub fn new() -> ConnectOptions {
        ConnectOptions::default()
    }

    /// asyncio's `family=`: the host's name resolves to addresses of this
    /// family only (say [`AddressFamily::Inet`](crate::AddressFamily) to
    /// keep to IPv4). Addresses given as a list are taken as they are.
    pub fn family(mut self, family: crate::AddressFamily) -> ConnectOptions {
        self.family = family;
        self
    }

    /// The family set with [`family`](ConnectOptions::family).
    pub fn get_family(&self) -> crate::AddressFamily {
        self.family
    }

    /// Races the addresses (RFC 8305, asyncio's `happy_eyeballs_delay`):
    /// the next address is tried when the previous attempt fails, or
    /// `delay` seconds after it started, whichever comes first.
    /// [`RECOMMENDED_HAPPY_EYEBALLS_DELAY`] is RFC 8305's 0.25 s. Unless
    /// [`interleave`](ConnectOptions::interleave) says otherwise, the
    /// addresses are interleaved by family (`interleave(1)`).
    pub fn happy_eyeballs_delay(mut self, delay: f64) -> ConnectOptions {
        self.happy_eyeballs_delay = Some(delay);
        self
    }

    /// Reorders the addresses by family, as asyncio's `interleave`: first
    /// `first_address_family_count` addresses of the first family, then
    /// one of each family in turn (see [`interleave_addrinfos`]). 0 keeps
    /// the resolver's order.
    pub fn interleave(mut self, first_address_family_count: usize) -> ConnectOptions {
        self.interleave = Some(first_address_family_count);
        self
    }

    /// When every address fails, return all the errors as an
    /// [`Error::Group`] instead of one combined error (asyncio's
    /// `all_errors`).
    pub fn all_errors(mut self, on: bool) -> ConnectOptions {
        self.all_errors = on;
        self
    }

    /// Binds each socket to `addr` before it connects (asyncio's
    /// `local_addr`): the connection comes from that address (port 0: a
    /// port the kernel picks). Every attempt binds, in the Happy Eyeballs
    /// race too. Addresses of the other family (IPv6 for an IPv4
    /// `local_addr`, and the reverse) are skipped; if none is left,
    /// `create_connection` fails with `no matching local address with
    /// family=...`. A failed bind names the address: `error while
    /// attempting to bind on address 127.0.0.1:8080: Address in use (os
    /// error 98)`.
    ///
    /// ```
    /// use std::net::TcpListener;
    /// use std::rc::Rc;
    /// use tulip::{BaseTransport, ConnectOptions};
    /// struct Nothing;
    /// impl tulip::Protocol for Nothing {}
    /// tulip::run(async {
    ///     let server = TcpListener::bind("127.0.0.1:0")?;
    ///     let lp = tulip::get_running_loop()?;
    ///     let opts = ConnectOptions::new().local_addr("127.0.0.2:0".parse().unwrap());
    ///     let (t, _) = lp
    ///         .create_connection_addrs(|| Rc::new(Nothing), &[server.local_addr()?], &opts)
    ///         .await?;
    ///     let (_, peer) = server.accept()?;
    ///     assert_eq!(peer.ip().to_string(), "127.0.0.2");
    ///     t.close();
    ///     Ok(())
    /// }).unwrap();
    /// ```
    pub fn local_addr(mut self, addr: SocketAddr) -> ConnectOptions {
        self.local_addr = Some(addr);
        self
    }
}

/// asyncio's `_interleave_addrinfos`: groups `addrs` by family (in order of
/// first appearance), then takes `first_address_family_count` addresses of
/// the first family, and after that one address of each family in turn.
///
/// ```
/// use std::net::SocketAddr;
/// use tulip::base_events_connect::interleave_addrinfos;
/// let a: Vec<SocketAddr> = ["[2001:db8::1]:80", "[2001:db8::2]:80", "[2001:db8::3]:80", "192.0.2.1:80", "192.0.2.2:80"]
///     .iter().map(|s| s.parse().unwrap()).collect();
/// assert_eq!(interleave_addrinfos(&a, 1), [a[0], a[3], a[1], a[4], a[2]]);
/// assert_eq!(interleave_addrinfos(&a, 2), [a[0], a[1], a[3], a[2], a[4]]);
/// ```
pub fn interleave_addrinfos(
    addrs: &[SocketAddr],
    first_address_family_count: usize,
) -> Vec<SocketAddr> {
    let mut by_family: Vec<Vec<SocketAddr>> = Vec::new();
    for a in addrs {
        match by_family.iter_mut().find(|f| f[0].is_ipv4() == a.is_ipv4()) {
            Some(family) => family.push(*a),
            None => by_family.push(vec![*a]),
        }
    }
    let mut reordered = Vec::with_capacity(addrs.len());
    if first_address_family_count > 1 {
        if let Some(first) = by_family.first_mut() {
            let n = (first_address_family_count - 1).min(first.len());
            reordered.extend(first.drain(..n));
        }
    }
    // Round robin over the families (itertools.zip_longest).
    let longest = by_family.iter().map(Vec::len).max().unwrap_or(0);
    for i in 0..longest {
        reordered.extend(by_family.iter().filter_map(|f| f.get(i).copied()));
    }
    reordered
}

impl EventLoop {
    /// asyncio's `create_connection(protocol_factory, host, port)`:
    /// resolves `host` (IP literals at once, names off the loop thread),
    /// connects to each address in turn until one succeeds, and returns the
    /// transport and the protocol once `connection_made` has been called.
    ///
    /// A refused connection fails with an `Io` error of kind
    /// `ConnectionRefused`, which names the address (`connect call failed
    /// (127.0.0.1:8080)`). For Happy Eyeballs, see
    /// [`create_connection_with`](EventLoop::create_connection_with).
    ///
    /// ```
    /// use std::{cell::RefCell, io::Write, rc::Rc};
    /// use tulip::transports::prelude::*;
    ///
    /// #[derive(Default)]
    /// struct Collect(RefCell<Vec<u8>>);
    /// impl Protocol for Collect {
    ///     fn data_received(&self, data: &[u8]) {
    ///         self.0.borrow_mut().extend_from_slice(data);
    ///     }
    /// }
    ///
    /// tulip::run(async {
    ///     let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    ///     let port = listener.local_addr()?.port();
    ///     let lp = tulip::get_running_loop()?;
    ///     let (transport, proto) = lp
    ///         .create_connection(|| Rc::new(Collect::default()), "127.0.0.1", port)
    ///         .await?;
    ///     let (mut peer, _) = listener.accept()?;
    ///     peer.write_all(b"hi")?;
    ///     transport.write(b"hello")?;
    ///     tulip::sleep(0.05).await?;
    ///     assert_eq!(&*proto.0.borrow(), b"hi");
    ///     transport.close();
    ///     Ok(())
    /// }).unwrap();
    /// ```
    pub async fn create_connection<P, F>(
        &self,
        protocol_factory: F,
        host: &str,
        port: u16,
    ) -> Result<(Rc<SocketTransport>, Rc<P>)>
    where
        P: Protocol + 'static,
        F: FnOnce() -> Rc<P>,
    {
        self.create_connection_with(protocol_factory, host, port, &ConnectOptions::default())
            .await
    }

    /// asyncio's `create_connection(protocol_factory, host, port,
    /// happy_eyeballs_delay=..., interleave=..., all_errors=...)`:
    /// [`create_connection`](EventLoop::create_connection) with
    /// [`ConnectOptions`]. See
    /// [`create_connection_addrs`](EventLoop::create_connection_addrs) for
    /// how the addresses are tried.
    pub async fn create_connection_with<P, F>(
        &self,
        protocol_factory: F,
        host: &str,
        port: u16,
        options: &ConnectOptions,
    ) -> Result<(Rc<SocketTransport>, Rc<P>)>
    where
        P: Protocol + 'static,
        F: FnOnce() -> Rc<P>,
    {
        let addrs = self.getaddrinfo_family(host, port, options.family).await?;
        self.create_connection_addrs(protocol_factory, &addrs, options)
            .await
    }

    /// `create_connection` to a list of addresses, as if a host resolved
    /// to them (no name resolution).
    ///
    /// - With a [`local_addr`](ConnectOptions::local_addr), the addresses
    ///   of the other family are left out first, and each socket is bound
    ///   to it before it connects.
    /// - Without a `happy_eyeballs_delay`, the addresses are tried one
    ///   after the other, in order (after [`interleave`](ConnectOptions::interleave)
    ///   if given), until one connects.
    /// - With one, they are raced: the first attempt starts at once, each
    ///   next one when the previous fails or `delay` seconds after it
    ///   started. The first to connect wins; the other attempts are
    ///   cancelled and their sockets closed before this returns.
    ///
    /// If every address fails, the error is asyncio's: the one error if
    /// there is one (or if they all read the same), else one `Io` error
    /// whose message lists every address's failure (`multiple exceptions:
    /// connect call failed (127.0.0.2:80): ..., connect call failed
    /// (127.0.0.1:80): ...`) and whose kind is theirs if they share one;
    /// with [`all_errors`](ConnectOptions::all_errors), an [`Error::Group`]
    /// of them all.
    ///
    /// ```
    /// use std::net::TcpListener;
    /// use std::rc::Rc;
    /// use tulip::{BaseTransport, ConnectOptions};
    /// struct Nothing;
    /// impl tulip::Protocol for Nothing {}
    /// tulip::run(async {
    ///     // Nothing listens on the first address: refused at once, so the
    ///     // second is tried without waiting for the delay.
    ///     let closed = TcpListener::bind("127.0.0.2:0")?.local_addr()?;
    ///     let server = TcpListener::bind("127.0.0.1:0")?;
    ///     let addrs = [closed, server.local_addr()?];
    ///     let lp = tulip::get_running_loop()?;
    ///     let opts = ConnectOptions::new().happy_eyeballs_delay(0.25);
    ///     let (t, _) = lp.create_connection_addrs(|| Rc::new(Nothing), &addrs, &opts).await?;
    ///     let peer = t.get_extra_info("peername").and_then(|i| i.as_addr());
    ///     assert_eq!(peer, Some(addrs[1]));
    ///     t.close();
    ///     Ok(())
    /// }).unwrap();
    /// ```
    pub async fn create_connection_addrs<P, F>(
        &self,
        protocol_factory: F,
        addrs: &[SocketAddr],
        options: &ConnectOptions,
    ) -> Result<(Rc<SocketTransport>, Rc<P>)>
    where
        P: Protocol + 'static,
        F: FnOnce() -> Rc<P>,
    {
        let sock = self.connect_addrs(addrs, options).await?;
        self.create_connection_sock(protocol_factory, sock.into())
            .await
    }

    /// asyncio's `create_connection(protocol_factory, host, port, ...)` for
    /// a [`BufferedProtocol`]: as
    /// [`create_connection_with`](EventLoop::create_connection_with), and
    /// the transport receives straight into the protocol's buffer
    /// (`get_buffer`, then `buffer_updated`).
    ///
    /// ```
    /// use std::cell::{RefCell, RefMut};
    /// use std::io::Write;
    /// use std::rc::Rc;
    /// use tulip::{BufferedProtocol, ConnectOptions};
    ///
    /// /// Keeps everything it receives, reading 16 bytes at a time.
    /// #[derive(Default)]
    /// struct Keep { chunk: RefCell<[u8; 16]>, got: RefCell<Vec<u8>> }
    /// impl BufferedProtocol for Keep {
    ///     fn get_buffer(&self, _sizehint: usize) -> RefMut<'_, [u8]> {
    ///         RefMut::map(self.chunk.borrow_mut(), |c| &mut c[..])
    ///     }
    ///     fn buffer_updated(&self, nbytes: usize) {
    ///         self.got.borrow_mut().extend_from_slice(&self.chunk.borrow()[..nbytes]);
    ///     }
    /// }
    ///
    /// tulip::run(async {
    ///     let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    ///     let port = listener.local_addr()?.port();
    ///     let lp = tulip::get_running_loop()?;
    ///     let (t, keep) = lp
    ///         .create_connection_buffered(|| Rc::new(Keep::default()), "127.0.0.1", port, &ConnectOptions::new())
    ///         .await?;
    ///     let (mut peer, _) = listener.accept()?;
    ///     peer.write_all(b"more than sixteen bytes")?;
    ///     drop(peer);
    ///     while !tulip::BaseTransport::is_closing(&*t) {
    ///         tulip::sleep(0.01).await?;
    ///     }
    ///     assert_eq!(&*keep.got.borrow(), b"more than sixteen bytes");
    ///     Ok(())
    /// }).unwrap();
    /// ```
    pub async fn create_connection_buffered<P: BufferedProtocol + 'static>(
        &self,
        protocol_factory: impl FnOnce() -> Rc<P>,
        host: &str,
        port: u16,
        options: &ConnectOptions,
    ) -> Result<(Rc<SocketTransport>, Rc<P>)> {
        let addrs = self.getaddrinfo_family(host, port, options.family).await?;
        let sock = self.connect_addrs(&addrs, options).await?;
        self.create_connection_buffered_sock(protocol_factory, sock.into())
            .await
    }

    /// The connecting half of `create_connection`: the addresses tried as
    /// [`create_connection_addrs`](EventLoop::create_connection_addrs)
    /// says, until one gives a connected socket.
    async fn connect_addrs(
        &self,
        addrs: &[SocketAddr],
        options: &ConnectOptions,
    ) -> Result<std::net::TcpStream> {
        if addrs.is_empty() {
            return Err(Error::invalid_argument(
                "no address to connect to: give create_connection at least one",
            ));
        }
        if let Some(d) = options.happy_eyeballs_delay {
            if !(d.is_finite() && d >= 0.0) {
                return Err(Error::invalid_argument(format!(
                    "happy_eyeballs_delay must be a number of seconds >= 0, not {d}"
                )));
            }
        }
        let local = options.local_addr;
        let addrs = match local {
            Some(local) => same_family(addrs, local)?,
            None => addrs.to_vec(),
        };
        // With Happy Eyeballs, interleave the families by default.
        let interleave = options
            .interleave
            .or(options.happy_eyeballs_delay.map(|_| 1));
        let addrs = match interleave {
            Some(n) if n > 0 => interleave_addrinfos(&addrs, n),
            _ => addrs,
        };
        let mut exceptions = Vec::new();
        let sock = match options.happy_eyeballs_delay {
            // Not using Happy Eyeballs: one address after the other.
            None => {
                let mut sock = None;
                for addr in &addrs {
                    match self.sock_connect_from(*addr, local).await {
                        Ok(s) => {
                            sock = Some(s);
                            break;
                        }
                        Err(e) if e.is_cancelled() => return Err(e),
                        Err(e) => exceptions.push(e),
                    }
                }
                sock
            }
            Some(delay) => {
                let attempts = addrs.iter().map(|&addr| {
                    let lp = LoopRef::new(self.clone());
                    move || async move { lp.sock_connect_from(addr, local).await }
                });
                let (sock, _, errors) = staggered_race(attempts, Some(delay)).await?;
                // A loser's Cancelled is not a connection error (asyncio's
                // `_connect_sock` records only OSErrors).
                exceptions.extend(errors.into_iter().flatten().filter(|e| !e.is_cancelled()));
                sock
            }
        };
        sock.ok_or_else(|| combine_errors(exceptions, options.all_errors))
    }

    /// asyncio's `create_connection(protocol_factory, sock=sock)`: wraps an
    /// already connected socket.
    pub async fn create_connection_sock<P, F>(
        &self,
        protocol_factory: F,
        sock: StreamSocket,
    ) -> Result<(Rc<SocketTransport>, Rc<P>)>
    where
        P: Protocol + 'static,
        F: FnOnce() -> Rc<P>,
    {
        self.connection_transport(sock, protocol_factory(), StreamProtocol::plain)
            .await
    }

    /// asyncio's `create_connection(protocol_factory, sock=sock)` for a
    /// [`BufferedProtocol`]: as
    /// [`create_connection_sock`](EventLoop::create_connection_sock), it
    /// wraps an already connected socket (a std `TcpStream` or
    /// `UnixStream`, through `.into()`), and the transport receives
    /// straight into the protocol's buffer (`get_buffer`, then
    /// `buffer_updated`).
    ///
    /// Here the server is buffered too, on a listener bound beforehand
    /// ([`create_server_buffered_sock`](EventLoop::create_server_buffered_sock)):
    ///
    /// ```
    /// use std::cell::{RefCell, RefMut};
    /// use std::net::{TcpListener, TcpStream};
    /// use std::rc::Rc;
    /// use tulip::transports::prelude::*;
    /// use tulip::BufferedProtocol;
    ///
    /// /// Echoes what it receives, or keeps it, 8 bytes at a time.
    /// struct Peer {
    ///     echo: bool,
    ///     buf: RefCell<[u8; 8]>,
    ///     got: RefCell<Vec<u8>>,
    ///     transport: RefCell<Option<Rc<dyn Transport>>>,
    /// }
    /// impl BufferedProtocol for Peer {
    ///     fn connection_made(&self, transport: Rc<dyn Transport>) {
    ///         *self.transport.borrow_mut() = Some(transport);
    ///     }
    ///     fn get_buffer(&self, _sizehint: usize) -> RefMut<'_, [u8]> {
    ///         RefMut::map(self.buf.borrow_mut(), |b| &mut b[..])
    ///     }
    ///     fn buffer_updated(&self, nbytes: usize) {
    ///         let data = &self.buf.borrow()[..nbytes];
    ///         match &*self.transport.borrow() {
    ///             Some(t) if self.echo => t.write(data).unwrap(),
    ///             _ => self.got.borrow_mut().extend_from_slice(data),
    ///         }
    ///     }
    /// }
    /// fn peer(echo: bool) -> Rc<Peer> {
    ///     Rc::new(Peer { echo, buf: RefCell::new([0; 8]), got: RefCell::default(), transport: RefCell::default() })
    /// }
    ///
    /// tulip::run(async {
    ///     let lp = tulip::get_running_loop()?;
    ///     let listener = TcpListener::bind("127.0.0.1:0")?;
    ///     let addr = listener.local_addr()?;
    ///     let server = lp.create_server_buffered_sock(|| peer(true), listener)?;
    ///     // A blocking connect: the kernel completes it from the backlog.
    ///     let stream = TcpStream::connect(addr)?;
    ///     let (t, client) = lp.create_connection_buffered_sock(|| peer(false), stream.into()).await?;
    ///     t.write(b"echoed 8 bytes at a time")?;
    ///     while client.got.borrow().len() < 24 {
    ///         tulip::sleep(0.01).await?;
    ///     }
    ///     assert_eq!(&*client.got.borrow(), b"echoed 8 bytes at a time");
    ///     t.close();
    ///     server.close();
    ///     Ok(())
    /// }).unwrap();
    /// ```
    pub async fn create_connection_buffered_sock<P: BufferedProtocol + 'static>(
        &self,
        protocol_factory: impl FnOnce() -> Rc<P>,
        sock: StreamSocket,
    ) -> Result<(Rc<SocketTransport>, Rc<P>)> {
        self.connection_transport(sock, protocol_factory(), StreamProtocol::buffered)
            .await
    }

    /// asyncio's `connect_accepted_socket(protocol_factory, sock)`: hands a
    /// connection accepted outside the loop (a std `TcpStream` or
    /// `UnixStream`, through `.into()`) to the loop. Returns `(transport,
    /// protocol)` once the protocol's `connection_made` has run; the socket
    /// is made non-blocking. Without TLS, as here, asyncio's server side
    /// differs from [`create_connection_sock`](EventLoop::create_connection_sock)
    /// in name only, and so does this function.
    ///
    /// A blocking std listener accepts, the loop serves the connection:
    ///
    /// ```
    /// use std::io::Write;
    /// use std::net::{TcpListener, TcpStream};
    /// use std::rc::Rc;
    /// use tulip::transports::prelude::*;
    ///
    /// /// Echoes what it receives.
    /// #[derive(Default)]
    /// struct Echo(std::cell::RefCell<Option<Rc<dyn Transport>>>);
    /// impl tulip::Protocol for Echo {
    ///     fn connection_made(&self, transport: Rc<dyn Transport>) {
    ///         *self.0.borrow_mut() = Some(transport);
    ///     }
    ///     fn data_received(&self, data: &[u8]) {
    ///         self.0.borrow().as_ref().unwrap().write(data).unwrap();
    ///     }
    /// }
    ///
    /// tulip::run(async {
    ///     let listener = TcpListener::bind("127.0.0.1:0")?;
    ///     let mut client = TcpStream::connect(listener.local_addr()?)?;
    ///     let (accepted, _) = listener.accept()?;
    ///     let lp = tulip::get_running_loop()?;
    ///     let (t, _) = lp.connect_accepted_socket(|| Rc::new(Echo::default()), accepted.into()).await?;
    ///     client.write_all(b"ping")?;
    ///     client.set_nonblocking(true)?;
    ///     assert_eq!(lp.sock_recv(&client, 4).await?, b"ping");
    ///     t.close();
    ///     Ok(())
    /// }).unwrap();
    /// ```
    pub async fn connect_accepted_socket<P, F>(
        &self,
        protocol_factory: F,
        sock: StreamSocket,
    ) -> Result<(Rc<SocketTransport>, Rc<P>)>
    where
        P: Protocol + 'static,
        F: FnOnce() -> Rc<P>,
    {
        self.create_connection_sock(protocol_factory, sock).await
    }

    /// asyncio's `connect_accepted_socket(protocol_factory, sock)` for a
    /// [`BufferedProtocol`]: as
    /// [`connect_accepted_socket`](EventLoop::connect_accepted_socket), and
    /// the transport receives straight into the protocol's buffer
    /// (`get_buffer`, then `buffer_updated`), as with
    /// [`create_connection_buffered_sock`](EventLoop::create_connection_buffered_sock).
    ///
    /// ```
    /// use std::cell::{Cell, RefCell, RefMut};
    /// use std::io::Write;
    /// use std::os::unix::net::UnixStream;
    /// use std::rc::Rc;
    /// use tulip::BufferedProtocol;
    ///
    /// /// Counts the bytes it receives, 4 at a time.
    /// #[derive(Default)]
    /// struct Count { buf: RefCell<[u8; 4]>, n: Cell<usize> }
    /// impl BufferedProtocol for Count {
    ///     fn get_buffer(&self, _sizehint: usize) -> RefMut<'_, [u8]> {
    ///         RefMut::map(self.buf.borrow_mut(), |b| &mut b[..])
    ///     }
    ///     fn buffer_updated(&self, nbytes: usize) {
    ///         self.n.set(self.n.get() + nbytes);
    ///     }
    /// }
    ///
    /// tulip::run(async {
    ///     // One end of a socket pair stands for an accepted connection.
    ///     let (ours, mut peer) = UnixStream::pair()?;
    ///     let lp = tulip::get_running_loop()?;
    ///     let (_t, count) = lp
    ///         .connect_accepted_socket_buffered(|| Rc::new(Count::default()), ours.into())
    ///         .await?;
    ///     peer.write_all(b"ten bytes!")?;
    ///     while count.n.get() < 10 {
    ///         tulip::sleep(0.01).await?;
    ///     }
    ///     Ok(())
    /// }).unwrap();
    /// ```
    pub async fn connect_accepted_socket_buffered<P: BufferedProtocol + 'static>(
        &self,
        protocol_factory: impl FnOnce() -> Rc<P>,
        sock: StreamSocket,
    ) -> Result<(Rc<SocketTransport>, Rc<P>)> {
        self.create_connection_buffered_sock(protocol_factory, sock)
            .await
    }

    /// asyncio's `_create_connection_transport`: the transport over `sock`,
    /// once `protocol`'s `connection_made` has run. `kind` says which kind
    /// of protocol it is ([`StreamProtocol::plain`] or
    /// [`StreamProtocol::buffered`]), as asyncio's transport checks
    /// `isinstance(protocol, BufferedProtocol)`.
    async fn connection_transport<P>(
        &self,
        sock: StreamSocket,
        protocol: Rc<P>,
        kind: fn(Rc<P>) -> StreamProtocol,
    ) -> Result<(Rc<SocketTransport>, Rc<P>)> {
        let waiter: Future<()> = self.create_future();
        let transport = SocketTransport::with_protocol(
            self,
            sock,
            kind(protocol.clone()),
            Some(waiter.clone()),
            None,
        )?;
        // asyncio's `except: transport.close(); raise`, also when this
        // future is dropped at the await: the transport is registered with
        // the loop, and would otherwise serve a connection nobody holds.
        let close = CloseUnlessConnected(&transport);
        waiter.await?;
        std::mem::forget(close);
        Ok((transport, protocol))
    }

    /// asyncio's `create_unix_connection(protocol_factory, path)`.
    pub async fn create_unix_connection<P, F>(
        &self,
        protocol_factory: F,
        path: impl AsRef<Path>,
    ) -> Result<(Rc<SocketTransport>, Rc<P>)>
    where
        P: Protocol + 'static,
        F: FnOnce() -> Rc<P>,
    {
        let s = self.sock_connect_unix(path).await?;
        self.create_connection_sock(protocol_factory, s.into())
            .await
    }

    /// asyncio's `create_unix_connection(protocol_factory, path)` for a
    /// [`BufferedProtocol`]: as
    /// [`create_unix_connection`](EventLoop::create_unix_connection), and
    /// the transport receives straight into the protocol's buffer
    /// (`get_buffer`, then `buffer_updated`).
    ///
    /// Here the server is buffered too
    /// ([`create_unix_server_buffered`](EventLoop::create_unix_server_buffered)),
    /// and counts lines:
    ///
    /// ```
    /// use std::cell::{Cell, RefCell, RefMut};
    /// use std::rc::Rc;
    /// use tulip::transports::prelude::*;
    /// use tulip::{BufferedProtocol, ServerOptions};
    ///
    /// /// Counts the lines it receives, reading 4 bytes at a time.
    /// #[derive(Default)]
    /// struct Lines { buf: RefCell<[u8; 4]>, count: Cell<usize> }
    /// impl BufferedProtocol for Lines {
    ///     fn get_buffer(&self, _sizehint: usize) -> RefMut<'_, [u8]> {
    ///         RefMut::map(self.buf.borrow_mut(), |b| &mut b[..])
    ///     }
    ///     fn buffer_updated(&self, nbytes: usize) {
    ///         let lines = self.buf.borrow()[..nbytes].iter().filter(|&&b| b == b'\n').count();
    ///         self.count.set(self.count.get() + lines);
    ///     }
    /// }
    ///
    /// tulip::run(async {
    ///     let dir = std::env::temp_dir().join(format!("tulip-doc-lines-{}", std::process::id()));
    ///     std::fs::create_dir_all(&dir)?;
    ///     let path = dir.join("lines.sock");
    ///     let lp = tulip::get_running_loop()?;
    ///     let counter = Rc::new(Lines::default());
    ///     let c = counter.clone();
    ///     let server = lp.create_unix_server_buffered(move || c.clone(), &path, &ServerOptions::new())?;
    ///     let (t, _) = lp.create_unix_connection_buffered(|| Rc::new(Lines::default()), &path).await?;
    ///     t.write(b"one\ntwo\nthree\n")?;
    ///     while counter.count.get() < 3 {
    ///         tulip::sleep(0.01).await?;
    ///     }
    ///     t.close();
    ///     server.close(); // removes the socket file
    ///     std::fs::remove_dir(&dir)?;
    ///     Ok(())
    /// }).unwrap();
    /// ```
    pub async fn create_unix_connection_buffered<P: BufferedProtocol + 'static>(
        &self,
        protocol_factory: impl FnOnce() -> Rc<P>,
        path: impl AsRef<Path>,
    ) -> Result<(Rc<SocketTransport>, Rc<P>)> {
        let s = self.sock_connect_unix(path).await?;
        self.create_connection_buffered_sock(protocol_factory, s.into())
            .await
    }
}

/// Closes the transport of a `connection_transport` that did not return it
/// (its wait failed, was cancelled, or was dropped).
struct CloseUnlessConnected<'a>(&'a Rc<SocketTransport>);

impl Drop for CloseUnlessConnected<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// The addresses of `local`'s family. asyncio's `_connect_sock` fails each
/// other one with `no matching local address with family=... found`; when
/// every address is of the other family, that is the error.
fn same_family(addrs: &[SocketAddr], local: SocketAddr) -> Result<Vec<SocketAddr>> {
    let kept: Vec<SocketAddr> = addrs
        .iter()
        .copied()
        .filter(|a| a.is_ipv4() == local.is_ipv4())
        .collect();
    if kept.is_empty() {
        let family = if local.is_ipv4() {
            "AF_INET6"
        } else {
            "AF_INET"
        };
        return Err(Error::Io(Arc::new(io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            format!(
                "no matching local address with family={family} found: \
                 local_addr {local} cannot connect to {addrs:?}; give a local_addr of \
                 that family, or none"
            ),
        ))));
    }
    Ok(kept)
}

/// asyncio's end of `create_connection` when no address connected: one
/// error as it is, several as one combined `OSError` (or a group).
fn combine_errors(exceptions: Vec<Error>, all_errors: bool) -> Error {
    if all_errors {
        return Error::Group {
            message: "create_connection failed".into(),
            errors: exceptions.into(),
        };
    }
    let Some(first) = exceptions.first() else {
        // No attempt ended with an error of its own (asyncio's TimeoutError).
        return Error::Timeout;
    };
    // If they all read the same, raise one.
    let model = first.to_string();
    if exceptions.iter().all(|e| e.to_string() == model) {
        return first.clone();
    }
    let kind = first
        .io_kind()
        .filter(|k| exceptions.iter().all(|e| e.io_kind() == Some(*k)))
        .unwrap_or(io::ErrorKind::Other);
    Error::Io(Arc::new(io::Error::new(
        kind,
        MultipleErrors(exceptions.into()),
    )))
}

/// asyncio's `OSError('Multiple exceptions: ...')`: every address's error.
#[derive(Debug)]
struct MultipleErrors(Arc<[Error]>);

impl fmt::Display for MultipleErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("multiple exceptions: ")?;
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for MultipleErrors {}
