//! Datagram endpoints: UDP and Unix datagram sockets. Mirrors
//! `_SelectorDatagramTransport` in `Lib/asyncio/selector_events.py` and
//! `create_datagram_endpoint` in `base_events.py` (whose `family=AF_UNIX`
//! branch is [`EventLoop::create_unix_datagram_endpoint`] here).
//!
//! The transport itself, [`DatagramSocketTransport`] over a
//! [`DatagramSocket`], is in the `transport` submodule (asyncio's
//! `_SelectorDatagramTransport`, with the invariants of sending,
//! receiving and closing); this module makes endpoints of it.
//!
//! # Invariants
//! - A UDP endpoint's local and remote addresses are of one family:
//!   addresses of two families are refused before any socket is made, and
//!   names are resolved (off the loop's thread) and paired by family as
//!   asyncio's `addr_infos` does.
//! - An endpoint that `create_datagram_endpoint` made but does not return
//!   (the wait for `connection_made` failed, was cancelled, or was
//!   dropped) is closed.

use std::io;
use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::rc::Rc;

use crate::error::{os_error_with_context, Error, Result};
use crate::event_loop::EventLoop;
use crate::futures::Future;
use crate::protocols::DatagramProtocol;
use crate::transports::{BaseTransport, DatagramAddr};

mod transport;

pub use self::transport::{DatagramSocket, DatagramSocketTransport};

// ===== DatagramOptions =====

/// The socket keyword arguments of asyncio's `create_datagram_endpoint`:
/// `reuse_port` and `allow_broadcast` (for
/// [`EventLoop::create_datagram_endpoint_with`] and
/// [`EventLoop::create_datagram_endpoint_host`]; asyncio's `sock=` is
/// [`EventLoop::create_datagram_endpoint_sock`]), and `family`: the
/// addresses a name resolves to (`create_datagram_endpoint_host`), the
/// family an address given as it is must have, and, with no address at
/// all, the socket's family.
///
/// The defaults are asyncio's: neither option set, and any family
/// (`AF_UNSPEC`).
///
/// ```
/// use std::rc::Rc;
/// use tulip::{BaseTransport, DatagramOptions};
/// struct Nothing;
/// impl tulip::DatagramProtocol for Nothing {}
/// tulip::run(async {
///     let lp = tulip::get_running_loop()?;
///     // Two endpoints on one port: the kernel spreads the datagrams.
///     let opts = DatagramOptions::new().reuse_port(true);
///     let local = "127.0.0.1:0".parse().unwrap();
///     let (a, _) = lp.create_datagram_endpoint_with(|| Rc::new(Nothing), Some(local), None, &opts).await?;
///     let local = a.get_extra_info("sockname").and_then(|i| i.as_addr());
///     let (b, _) = lp.create_datagram_endpoint_with(|| Rc::new(Nothing), local, None, &opts).await?;
///     assert_eq!(b.get_extra_info("sockname").and_then(|i| i.as_addr()), local);
///     a.close();
///     b.close();
///     Ok(())
/// }).unwrap();
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DatagramOptions {
    reuse_port: bool,
    allow_broadcast: bool,
    family: crate::AddressFamily,
}

impl DatagramOptions {
    /// asyncio's defaults (see the type's docs).
    pub fn new() -> DatagramOptions {
        DatagramOptions::default()
    }

    /// asyncio's `family=`: the local and remote host names resolve to
    /// addresses of this family only, an address given as it is must be
    /// of it (else the resolver's error), and with neither address the
    /// socket is of this family (`Inet6`: bound to `[::]:0`).
    pub fn family(mut self, family: crate::AddressFamily) -> DatagramOptions {
        self.family = family;
        self
    }

    /// `SO_REUSEPORT` before `bind`: several sockets (of this or other
    /// processes, each with the option set) may bind the same address and
    /// port; the kernel balances the datagrams between them.
    pub fn reuse_port(mut self, on: bool) -> DatagramOptions {
        self.reuse_port = on;
        self
    }

    /// `SO_BROADCAST`: the endpoint may send to broadcast addresses. As in
    /// asyncio, a `remote_addr` is then not connected to: it is where
    /// `sendto(data, None)` sends (with `sendto(2)`), `peername` is `None`,
    /// and datagrams from any sender are received.
    pub fn allow_broadcast(mut self, on: bool) -> DatagramOptions {
        self.allow_broadcast = on;
        self
    }
}

impl EventLoop {
    /// asyncio's `create_datagram_endpoint(protocol_factory, local_addr,
    /// remote_addr)`: a UDP socket bound to `local_addr` (default: any
    /// address, of the remote's family) and connected to `remote_addr` if
    /// given. Returns once `connection_made` has been called. Addresses of
    /// two families are an [`Error::InvalidArgument`] (asyncio's
    /// `ValueError`).
    ///
    /// ```
    /// use std::{cell::RefCell, rc::Rc};
    /// use tulip::{BaseTransport, DatagramAddr};
    /// #[derive(Default)]
    /// struct Got(RefCell<Vec<u8>>);
    /// impl tulip::DatagramProtocol for Got {
    ///     fn datagram_received(&self, data: &[u8], _: DatagramAddr) {
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
        let options = DatagramOptions::default();
        self.create_datagram_endpoint_with(protocol_factory, local_addr, remote_addr, &options)
            .await
    }

    /// asyncio's `create_datagram_endpoint(protocol_factory, local_addr,
    /// remote_addr, reuse_port=..., allow_broadcast=...)`:
    /// [`create_datagram_endpoint`](EventLoop::create_datagram_endpoint)
    /// with [`DatagramOptions`], set on the socket before `bind`.
    ///
    /// ```
    /// use std::rc::Rc;
    /// use tulip::{BaseTransport, DatagramOptions, DatagramTransport};
    /// struct Nothing;
    /// impl tulip::DatagramProtocol for Nothing {}
    /// tulip::run(async {
    ///     let lp = tulip::get_running_loop()?;
    ///     let peer = std::net::UdpSocket::bind("127.0.0.1:0")?;
    ///     let opts = DatagramOptions::new().allow_broadcast(true);
    ///     let (t, _) = lp
    ///         .create_datagram_endpoint_with(|| Rc::new(Nothing), None, Some(peer.local_addr()?), &opts)
    ///         .await?;
    ///     // Not connected: sent with sendto(2) to the remote address.
    ///     assert!(t.get_extra_info("peername").is_none());
    ///     t.sendto(b"hi", None)?;
    ///     let mut buf = [0u8; 8];
    ///     assert_eq!(peer.recv(&mut buf)?, 2);
    ///     t.close();
    ///     Ok(())
    /// }).unwrap();
    /// ```
    pub async fn create_datagram_endpoint_with<P, F>(
        &self,
        protocol_factory: F,
        local_addr: Option<SocketAddr>,
        remote_addr: Option<SocketAddr>,
        options: &DatagramOptions,
    ) -> Result<(Rc<DatagramSocketTransport>, Rc<P>)>
    where
        P: DatagramProtocol + 'static,
        F: FnOnce() -> Rc<P>,
    {
        // asyncio resolves each address with `family=`: one of the other
        // family is the resolver's error, before any socket is made.
        for a in local_addr.iter().chain(remote_addr.iter()) {
            if !options.family.matches(a) {
                return Err(options.family.none_for(&a.ip().to_string()));
            }
        }
        // asyncio pairs the two addresses by family, and raises ValueError
        // when no family has both (before making any socket).
        if let (Some(l), Some(r)) = (local_addr, remote_addr) {
            if l.is_ipv4() != r.is_ipv4() {
                return Err(Error::invalid_argument(format!(
                    "can not get address information: local_addr {l} and remote_addr {r} are of different address families; give both as IPv4 or both as IPv6"
                )));
            }
        }
        let local = match (local_addr, remote_addr) {
            (Some(l), _) => l,
            (None, Some(SocketAddr::V6(_))) => "[::]:0".parse().expect("literal"),
            // asyncio's `family=AF_INET6` with neither address: an
            // AF_INET6 socket (`addr_pairs_info = (((family, proto),
            // (None, None)),)`).
            (None, None) if options.family == crate::AddressFamily::Inet6 => {
                "[::]:0".parse().expect("literal")
            }
            (None, _) => "0.0.0.0:0".parse().expect("literal"),
        };
        // asyncio connects to `remote_addr` unless broadcast is allowed;
        // either way the transport sends there (`r_addr`).
        let sock = crate::sys::udp_socket(
            Some(local),
            remote_addr,
            !options.allow_broadcast,
            options.reuse_port,
            options.allow_broadcast,
        )?;
        let remote = remote_addr.map(DatagramAddr::from);
        self.make_datagram_transport(protocol_factory, sock.into(), remote)
            .await
    }

    /// asyncio's `create_datagram_endpoint(protocol_factory,
    /// local_addr=(host, port), remote_addr=(host, port), ...)`: as
    /// [`create_datagram_endpoint_with`](EventLoop::create_datagram_endpoint_with),
    /// each address given as a host name (or an IP address in text) and a
    /// port, resolved with [`getaddrinfo`](EventLoop::getaddrinfo) off the
    /// loop's thread.
    ///
    /// As asyncio does, the addresses are paired by family (IPv4, IPv6, in
    /// the order the resolver gave them, the local address's first): a
    /// family is a candidate only if it has an address for each one given,
    /// and the first candidate whose socket can be made, bound and
    /// connected is used; if none can, the first error is returned. No
    /// candidate (`("127.0.0.1", 0)` and `("::1", 53)`) is an
    /// [`Error::InvalidArgument`] (asyncio's `ValueError('can not get
    /// address information')`). Without a local address, the socket is
    /// not bound before it connects (the kernel picks the address, as in
    /// asyncio); with neither, it is bound to `0.0.0.0:0`, as by
    /// [`create_datagram_endpoint`](EventLoop::create_datagram_endpoint)
    /// (to `[::]:0` with [`DatagramOptions::family`] `Inet6`).
    ///
    /// ```
    /// use std::rc::Rc;
    /// use tulip::{BaseTransport, DatagramOptions, DatagramTransport};
    /// struct Nothing;
    /// impl tulip::DatagramProtocol for Nothing {}
    /// tulip::run(async {
    ///     let lp = tulip::get_running_loop()?;
    ///     let peer = std::net::UdpSocket::bind("127.0.0.1:0")?;
    ///     let port = peer.local_addr()?.port();
    ///     let (t, _) = lp
    ///         .create_datagram_endpoint_host(
    ///             || Rc::new(Nothing),
    ///             Some(("localhost", 0)),
    ///             Some(("127.0.0.1", port)),
    ///             &DatagramOptions::new(),
    ///         )
    ///         .await?;
    ///     t.sendto(b"hi", None)?;
    ///     let mut buf = [0u8; 8];
    ///     assert_eq!(peer.recv(&mut buf)?, 2);
    ///     t.close();
    ///     Ok(())
    /// }).unwrap();
    /// ```
    pub async fn create_datagram_endpoint_host<P, F>(
        &self,
        protocol_factory: F,
        local_addr: Option<(&str, u16)>,
        remote_addr: Option<(&str, u16)>,
        options: &DatagramOptions,
    ) -> Result<(Rc<DatagramSocketTransport>, Rc<P>)>
    where
        P: DatagramProtocol + 'static,
        F: FnOnce() -> Rc<P>,
    {
        if local_addr.is_none() && remote_addr.is_none() {
            return self
                .create_datagram_endpoint_with(protocol_factory, None, None, options)
                .await;
        }
        let mut locals = Vec::new();
        if let Some((host, port)) = local_addr {
            locals = self.getaddrinfo_family(host, port, options.family).await?;
        }
        let mut remotes = Vec::new();
        if let Some((host, port)) = remote_addr {
            remotes = self.getaddrinfo_family(host, port, options.family).await?;
        }
        let pairs = pair_by_family(
            &locals,
            &remotes,
            local_addr.is_some(),
            remote_addr.is_some(),
        );
        if pairs.is_empty() {
            return Err(Error::invalid_argument(format!(
                "can not get address information: local_addr {locals:?} and remote_addr {remotes:?} have no address family in common; give both as IPv4 or both as IPv6"
            )));
        }
        // asyncio's `for ... in addr_pairs_info: try: ... except OSError:
        // exceptions.append(exc) else: break`, then `raise exceptions[0]`.
        let mut first_error = None;
        for (local, remote) in pairs {
            match crate::sys::udp_socket(
                local,
                remote,
                !options.allow_broadcast,
                options.reuse_port,
                options.allow_broadcast,
            ) {
                Ok(sock) => {
                    let remote = remote.map(DatagramAddr::from);
                    return self
                        .make_datagram_transport(protocol_factory, sock.into(), remote)
                        .await;
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.expect("one pair at least").into())
    }

    /// asyncio's `create_datagram_endpoint(protocol_factory, sock=sock)`:
    /// an endpoint on an existing datagram socket (UDP or Unix), bound and
    /// set up by the caller. As in asyncio, no address is given: a socket
    /// connected already sends to its peer (`sendto(data, None)`, and
    /// `peername`), any other needs an address for each datagram. Returns
    /// once `connection_made` has been called.
    ///
    /// ```
    /// use std::rc::Rc;
    /// use tulip::{BaseTransport, DatagramTransport};
    /// struct Nothing;
    /// impl tulip::DatagramProtocol for Nothing {}
    /// tulip::run(async {
    ///     let lp = tulip::get_running_loop()?;
    ///     let (a, b) = std::os::unix::net::UnixDatagram::pair()?;
    ///     let (t, _) = lp.create_datagram_endpoint_sock(|| Rc::new(Nothing), a).await?;
    ///     t.sendto(b"hi", None)?;
    ///     let mut buf = [0u8; 8];
    ///     assert_eq!(b.recv(&mut buf)?, 2);
    ///     t.close();
    ///     Ok(())
    /// }).unwrap();
    /// ```
    pub async fn create_datagram_endpoint_sock<P, F>(
        &self,
        protocol_factory: F,
        sock: impl Into<DatagramSocket>,
    ) -> Result<(Rc<DatagramSocketTransport>, Rc<P>)>
    where
        P: DatagramProtocol + 'static,
        F: FnOnce() -> Rc<P>,
    {
        self.make_datagram_transport(protocol_factory, sock.into(), None)
            .await
    }

    /// asyncio's `create_datagram_endpoint(protocol_factory, local_addr,
    /// remote_addr, family=socket.AF_UNIX)`: a Unix datagram socket, bound
    /// to the path `local_path` if given and connected to `remote_path` if
    /// given. Returns once `connection_made` has been called.
    ///
    /// - A stale socket file at `local_path` is removed first, as asyncio
    ///   does; any other file there makes the bind fail (`AddrInUse`), and
    ///   the error says so. The socket file stays after the endpoint
    ///   closes (as in asyncio): remove it, or let the next bind do it.
    /// - A peer can only answer a socket that has a path: give `local_path`
    ///   to receive replies.
    /// - Connecting to a path where nothing is bound fails with `NotFound`
    ///   (no file) or `ConnectionRefused` (a stale socket file).
    ///
    /// ```
    /// use std::{cell::RefCell, rc::Rc};
    /// use tulip::transports::prelude::*;
    ///
    /// /// Answers every datagram with its upper-case copy.
    /// #[derive(Default)]
    /// struct Shout(RefCell<Option<Rc<dyn DatagramTransport>>>);
    /// impl DatagramProtocol for Shout {
    ///     fn connection_made(&self, t: Rc<dyn DatagramTransport>) {
    ///         *self.0.borrow_mut() = Some(t);
    ///     }
    ///     fn datagram_received(&self, data: &[u8], addr: DatagramAddr) {
    ///         let t = self.0.borrow().clone().unwrap();
    ///         t.sendto(&data.to_ascii_uppercase(), Some(addr)).unwrap();
    ///     }
    /// }
    ///
    /// tulip::run(async {
    ///     let dir = std::env::temp_dir().join(format!("tulip-doc-dgram-{}", std::process::id()));
    ///     std::fs::create_dir_all(&dir)?;
    ///     let (server, client) = (dir.join("server.sock"), dir.join("client.sock"));
    ///     let lp = tulip::get_running_loop()?;
    ///     let (st, _) = lp
    ///         .create_unix_datagram_endpoint(|| Rc::new(Shout::default()), Some(&server), None)
    ///         .await?;
    ///     let me = std::os::unix::net::UnixDatagram::bind(&client)?;
    ///     me.send_to(b"hi", &server)?;
    ///     let mut buf = [0u8; 16];
    ///     me.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    ///     // The loop must run to answer: receive in a thread.
    ///     let reply = tulip::to_thread(move || me.recv(&mut buf).map(|n| buf[..n].to_vec())).await??;
    ///     assert_eq!(reply, b"HI");
    ///     st.close();
    ///     std::fs::remove_dir_all(&dir)?;
    ///     Ok(())
    /// }).unwrap();
    /// ```
    pub async fn create_unix_datagram_endpoint<P, F>(
        &self,
        protocol_factory: F,
        local_path: Option<&Path>,
        remote_path: Option<&Path>,
    ) -> Result<(Rc<DatagramSocketTransport>, Rc<P>)>
    where
        P: DatagramProtocol + 'static,
        F: FnOnce() -> Rc<P>,
    {
        let sock = match local_path {
            Some(path) => {
                crate::base_events_net::remove_stale_socket(path);
                UnixDatagram::bind(path).map_err(|e| bind_error(e, path))?
            }
            None => UnixDatagram::unbound()?,
        };
        let remote = match remote_path {
            Some(path) => {
                sock.connect(path).map_err(|e| {
                    os_error_with_context(e, format!("connect call failed ({})", path.display()))
                })?;
                Some(DatagramAddr::from_path(path)?)
            }
            None => None,
        };
        self.make_datagram_transport(protocol_factory, sock.into(), remote)
            .await
    }

    /// asyncio's `_make_datagram_transport` and the wait for its waiter.
    async fn make_datagram_transport<P, F>(
        &self,
        protocol_factory: F,
        sock: DatagramSocket,
        remote: Option<DatagramAddr>,
    ) -> Result<(Rc<DatagramSocketTransport>, Rc<P>)>
    where
        P: DatagramProtocol + 'static,
        F: FnOnce() -> Rc<P>,
    {
        let protocol = protocol_factory();
        let waiter: Future<()> = self.create_future();
        let t = DatagramSocketTransport::new(
            self,
            sock,
            protocol.clone(),
            remote,
            Some(waiter.clone()),
        )?;
        // asyncio's `except: transport.close(); raise`, also when this
        // future is dropped at the await: the endpoint is registered with
        // the loop, and would otherwise stay bound with nobody holding it.
        let close = CloseUnlessMade(&t);
        waiter.await?;
        std::mem::forget(close);
        Ok((t, protocol))
    }
}

/// asyncio's `addr_infos` of `create_datagram_endpoint`: the resolved
/// addresses joined by family, in the order the families first appear
/// (the local addresses first). As asyncio's `addr_infos[key][idx] =
/// address` does, the last address of a family wins on each side. A family
/// is kept only if it has an address for each side that was given
/// (`has_local`, `has_remote`).
fn pair_by_family(
    locals: &[SocketAddr],
    remotes: &[SocketAddr],
    has_local: bool,
    has_remote: bool,
) -> Vec<(Option<SocketAddr>, Option<SocketAddr>)> {
    // (is IPv4, local, remote), at most one per family.
    let mut families: Vec<(bool, Option<SocketAddr>, Option<SocketAddr>)> = Vec::new();
    let sides = [(locals, true), (remotes, false)];
    for (addrs, local) in sides {
        for a in addrs {
            let i = match families.iter().position(|f| f.0 == a.is_ipv4()) {
                Some(i) => i,
                None => {
                    families.push((a.is_ipv4(), None, None));
                    families.len() - 1
                }
            };
            if local {
                families[i].1 = Some(*a);
            } else {
                families[i].2 = Some(*a);
            }
        }
    }
    families
        .into_iter()
        .filter(|(_, l, r)| (l.is_some() || !has_local) && (r.is_some() || !has_remote))
        .map(|(_, l, r)| (l, r))
        .collect()
}

/// Closes the transport of a `make_datagram_transport` that did not return
/// it (its wait failed, was cancelled, or was dropped).
struct CloseUnlessMade<'a>(&'a Rc<DatagramSocketTransport>);

impl Drop for CloseUnlessMade<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// A failed bind on `path`, saying what is in the way when it can (also
/// the Unix stream server's, in `base_events_net`).
pub(crate) fn bind_error(e: io::Error, path: &Path) -> io::Error {
    use std::os::unix::fs::FileTypeExt;
    let in_the_way = e.kind() == io::ErrorKind::AddrInUse
        && std::fs::symlink_metadata(path).is_ok_and(|m| !m.file_type().is_socket());
    let context = if in_the_way {
        format!(
            "cannot bind on address {}: the path exists and is not a socket (remove it, or choose another path)",
            path.display()
        )
    } else {
        format!(
            "error while attempting to bind on address {}",
            path.display()
        )
    };
    os_error_with_context(e, context)
}

#[cfg(test)]
mod tests {
    use super::pair_by_family;
    use std::net::SocketAddr;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_are_paired_by_family_as_asyncio_joins_addr_infos() {
        // "localhost" resolving to ::1 then 127.0.0.1, a remote with only
        // an IPv4 address: only IPv4 has both.
        let locals = [a("[::1]:0"), a("127.0.0.1:0")];
        let remotes = [a("127.0.0.1:9")];
        assert_eq!(
            pair_by_family(&locals, &remotes, true, true),
            [(Some(a("127.0.0.1:0")), Some(a("127.0.0.1:9")))]
        );
        // Both families: in the order they first appear, the local side's
        // first; the last address of a family wins (`addr_infos[key][idx]
        // = address`).
        let remotes = [a("127.0.0.2:9"), a("[::1]:9"), a("127.0.0.3:9")];
        assert_eq!(
            pair_by_family(&locals, &remotes, true, true),
            [
                (Some(a("[::1]:0")), Some(a("[::1]:9"))),
                (Some(a("127.0.0.1:0")), Some(a("127.0.0.3:9"))),
            ]
        );
        // A side not given needs no address.
        assert_eq!(
            pair_by_family(&[], &remotes, false, true),
            [(None, Some(a("127.0.0.3:9"))), (None, Some(a("[::1]:9")))]
        );
        assert!(pair_by_family(&[a("127.0.0.1:0")], &[a("[::1]:9")], true, true).is_empty());
    }
}
