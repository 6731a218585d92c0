//! The stream entry points: `open_connection`, `start_server` and their
//! Unix and `sock=` variants. Mirrors the functions at the top of
//! `Lib/asyncio/streams.py`.
//!
//! Each one builds a [`StreamReader`] and a [`StreamReaderProtocol`] and
//! hands the protocol to `create_connection` or `create_server`; the
//! writer is a [`StreamWriter`] over the resulting transport.
//!
//! # Invariants
//! - Every connection gets its own reader, protocol and writer; nothing is
//!   shared between connections of a server.
//! - A `client_connected_cb` that panics, or whose task fails, is reported
//!   to the loop's exception handler and its connection is closed; a task
//!   that is cancelled closes its connection without a report (asyncio's
//!   `StreamReaderProtocol` does the same).

use std::future::Future as StdFuture;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixListener;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::path::Path;
use std::rc::Rc;

use crate::base_events_connect::ConnectOptions;
use crate::base_events_net::{Server, ServerOptions};
use crate::error::{panic_message, Error, Result};
use crate::event_loop::{get_running_loop, EventLoop, ExceptionContext, Interrupt, LoopRef};
use crate::selector_events::{SocketTransport, StreamSocket};
use crate::streams::{
    ClientConnected, StreamReader, StreamReaderProtocol, StreamWriter, DEFAULT_LIMIT,
};

/// Turns a connected transport into a (reader, writer) pair.
fn into_streams(
    transport: Rc<SocketTransport>,
    protocol: &StreamReaderProtocol,
    reader: StreamReader,
) -> (StreamReader, StreamWriter) {
    let writer = StreamWriter::new(
        transport,
        protocol.flow_control().clone(),
        Some(reader.clone()),
    );
    (reader, writer)
}

/// asyncio's `open_connection(host, port)`: connects and returns a reader
/// and a writer (reader limit: 64 KiB).
///
/// ```
/// tulip::run(async {
///     let server = tulip::start_server(|reader, writer| async move {
///         let line = reader.readline().await?;
///         writer.write(&line)?;
///         writer.drain().await
///     }, "127.0.0.1", 0).await?;
///     let addr = server.local_addrs()[0];
///     let (reader, writer) = tulip::open_connection("127.0.0.1", addr.port()).await?;
///     writer.write(b"hello\n")?;
///     assert_eq!(reader.readline().await?, b"hello\n");
///     writer.close();
///     writer.wait_closed().await?;
///     server.close();
///     Ok(())
/// }).unwrap();
/// ```
pub async fn open_connection(host: &str, port: u16) -> Result<(StreamReader, StreamWriter)> {
    open_connection_with_limit(host, port, DEFAULT_LIMIT).await
}

/// [`open_connection`] with a reader `limit`.
pub async fn open_connection_with_limit(
    host: &str,
    port: u16,
    limit: usize,
) -> Result<(StreamReader, StreamWriter)> {
    open_connection_with(host, port, limit, &ConnectOptions::default()).await
}

/// asyncio's `open_connection(host, port, limit=..., happy_eyeballs_delay=...,
/// interleave=..., all_errors=...)`: [`open_connection`] with a reader
/// `limit` and [`ConnectOptions`] (see
/// [`EventLoop::create_connection_addrs`] for how the addresses are tried).
pub async fn open_connection_with(
    host: &str,
    port: u16,
    limit: usize,
    options: &ConnectOptions,
) -> Result<(StreamReader, StreamWriter)> {
    let lp = get_running_loop()?;
    let addrs = lp
        .getaddrinfo_family(host, port, options.get_family())
        .await?;
    open_connection_addrs(&addrs, limit, options).await
}

/// [`open_connection_with`] to a list of addresses, as if a host resolved
/// to them.
///
/// ```
/// use std::net::TcpListener;
/// use tulip::ConnectOptions;
/// tulip::run(async {
///     let closed = TcpListener::bind("127.0.0.2:0")?.local_addr()?; // refused
///     let server = TcpListener::bind("127.0.0.1:0")?;
///     let opts = ConnectOptions::new().happy_eyeballs_delay(0.25);
///     let addrs = [closed, server.local_addr()?];
///     let (_reader, writer) = tulip::open_connection_addrs(&addrs, tulip::DEFAULT_LIMIT, &opts).await?;
///     assert_eq!(writer.get_extra_info("peername").and_then(|i| i.as_addr()), Some(addrs[1]));
///     Ok(())
/// }).unwrap();
/// ```
pub async fn open_connection_addrs(
    addrs: &[SocketAddr],
    limit: usize,
    options: &ConnectOptions,
) -> Result<(StreamReader, StreamWriter)> {
    let lp = get_running_loop()?;
    let reader = StreamReader::with_loop(&lp, limit);
    let proto = Rc::new(StreamReaderProtocol::new(&lp, reader.clone(), None));
    let p2 = proto.clone();
    let (transport, _) = lp
        .create_connection_addrs(move || p2, addrs, options)
        .await?;
    Ok(into_streams(transport, &proto, reader))
}

/// asyncio's `open_connection(sock=sock)`: streams over an already
/// connected socket (TCP or Unix, e.g. one end of a `socketpair`), with
/// the default reader limit (64 KiB).
pub async fn open_connection_sock(
    sock: impl Into<StreamSocket>,
) -> Result<(StreamReader, StreamWriter)> {
    open_connection_sock_with_limit(sock, DEFAULT_LIMIT).await
}

/// asyncio's `open_connection(sock=sock, limit=...)`:
/// [`open_connection_sock`] with a reader `limit`.
///
/// ```
/// tulip::run(async {
///     let (a, b) = std::os::unix::net::UnixStream::pair()?;
///     let (reader, _wa) = tulip::open_connection_sock_with_limit(a, 4).await?;
///     let (_rb, writer) = tulip::open_connection_sock(b).await?;
///     writer.write(b"too long\n")?;
///     assert_eq!(reader.limit(), 4);
///     assert!(matches!(reader.readline().await, Err(tulip::Error::LimitOverrun { .. })));
///     Ok(())
/// }).unwrap();
/// ```
pub async fn open_connection_sock_with_limit(
    sock: impl Into<StreamSocket>,
    limit: usize,
) -> Result<(StreamReader, StreamWriter)> {
    let lp = get_running_loop()?;
    let reader = StreamReader::with_loop(&lp, limit);
    let proto = Rc::new(StreamReaderProtocol::new(&lp, reader.clone(), None));
    let p2 = proto.clone();
    let (transport, _) = lp.create_connection_sock(move || p2, sock.into()).await?;
    Ok(into_streams(transport, &proto, reader))
}

/// asyncio's `open_unix_connection(path)`, with the default reader limit
/// (64 KiB).
pub async fn open_unix_connection(path: impl AsRef<Path>) -> Result<(StreamReader, StreamWriter)> {
    open_unix_connection_with_limit(path, DEFAULT_LIMIT).await
}

/// asyncio's `open_unix_connection(path, limit=...)`:
/// [`open_unix_connection`] with a reader `limit`.
pub async fn open_unix_connection_with_limit(
    path: impl AsRef<Path>,
    limit: usize,
) -> Result<(StreamReader, StreamWriter)> {
    let lp = get_running_loop()?;
    let reader = StreamReader::with_loop(&lp, limit);
    let proto = Rc::new(StreamReaderProtocol::new(&lp, reader.clone(), None));
    let p2 = proto.clone();
    let (transport, _) = lp.create_unix_connection(move || p2, path).await?;
    Ok(into_streams(transport, &proto, reader))
}

/// Wraps a user's `client_connected_cb` so that each connection runs it as
/// a task, whose failure (or a panic of `cb` itself) is reported and closes
/// the connection; a cancelled task closes it too (asyncio's done callback
/// in `StreamReaderProtocol.connection_made`).
fn client_cb<F, Fut>(lp: &EventLoop, cb: F) -> ClientConnected
where
    F: Fn(StreamReader, StreamWriter) -> Fut + 'static,
    Fut: StdFuture<Output = Result<()>> + 'static,
{
    let lp = LoopRef::new(lp.clone());
    Rc::new(move |reader: StreamReader, writer: StreamWriter| {
        let transport = writer.transport().clone();
        // asyncio (gh-155941): a callback that fails before it returns its
        // coroutine is reported the same way, and closes its connection.
        // Ctrl-C goes on unwinding.
        let fut = match catch_unwind(AssertUnwindSafe(|| cb(reader, writer))) {
            Ok(fut) => fut,
            Err(payload) if payload.is::<Interrupt>() => resume_unwind(payload),
            Err(payload) => {
                lp.call_exception_handler(&ExceptionContext {
                    message: "Unhandled exception in client_connected_cb".into(),
                    error: Some(Error::Panic(panic_message(&*payload))),
                    transport: Some(crate::transports::describe(&*transport)),
                    ..Default::default()
                });
                transport.close();
                return;
            }
        };
        let Ok(task) = lp.create_task(fut) else {
            transport.close();
            return;
        };
        let lp2 = lp.clone();
        task.add_done_callback(move |t| {
            // asyncio (gh-113538): a cancelled handler closes its
            // connection, without a report.
            if t.cancelled() {
                transport.close();
                return;
            }
            if let Ok(Some(err)) = t.exception() {
                lp2.call_exception_handler(&ExceptionContext {
                    message: "Unhandled exception in client_connected_cb".into(),
                    error: Some(err),
                    transport: Some(crate::transports::describe(&*transport)),
                    ..Default::default()
                });
                transport.close();
            }
        });
    })
}

/// asyncio's `start_server(client_connected_cb, host, port)`: a server
/// that runs `cb(reader, writer)` as a new task for each connection.
///
/// The task owns the writer; when it ends and drops the writer, the
/// connection is closed. (asyncio's protocol keeps the server-side writer
/// until the connection is lost, so a handler that returns without closing
/// leaves the connection open.) So move the writer into the task even if
/// it only reads: a callback `|r, _w| async move { .. }` drops `_w` as it
/// returns, before the task runs, and the handler then reads EOF.
///
/// ```
/// tulip::run(async {
///     let server = tulip::start_server(
///         |reader, writer| async move {
///             let line = reader.readline().await?;
///             writer.write(&line)?; // the writer lives as long as the task
///             writer.drain().await
///         },
///         "127.0.0.1",
///         0,
///     ).await?;
///     let port = server.local_addrs()[0].port();
///     let (r, w) = tulip::open_connection("127.0.0.1", port).await?;
///     w.write(b"ping\n")?;
///     assert_eq!(r.readline().await?, b"ping\n");
///     Ok(())
/// }).unwrap();
/// ```
pub async fn start_server<F, Fut>(cb: F, host: &str, port: u16) -> Result<Server>
where
    F: Fn(StreamReader, StreamWriter) -> Fut + 'static,
    Fut: StdFuture<Output = Result<()>> + 'static,
{
    start_server_with_limit(cb, host, port, DEFAULT_LIMIT).await
}

/// [`start_server`] with a reader `limit` for each connection.
pub async fn start_server_with_limit<F, Fut>(
    cb: F,
    host: &str,
    port: u16,
    limit: usize,
) -> Result<Server>
where
    F: Fn(StreamReader, StreamWriter) -> Fut + 'static,
    Fut: StdFuture<Output = Result<()>> + 'static,
{
    let lp = get_running_loop()?;
    let factory = stream_factory(&lp, cb, limit);
    lp.create_server_with(factory, host, port, &ServerOptions::default())
        .await
}

/// asyncio's `start_server(client_connected_cb, host, port, limit=...,
/// backlog=..., reuse_address=..., reuse_port=...)`: [`start_server`] with
/// a reader `limit` and the listening socket's [`ServerOptions`].
///
/// ```
/// use tulip::ServerOptions;
/// tulip::run(async {
///     let opts = ServerOptions::new().backlog(10);
///     let server = tulip::start_server_with(|_r, _w| async { Ok(()) }, "127.0.0.1", 0,
///         tulip::DEFAULT_LIMIT, &opts).await?;
///     assert!(server.is_serving());
///     server.close();
///     Ok(())
/// }).unwrap();
/// ```
pub async fn start_server_with<F, Fut>(
    cb: F,
    host: &str,
    port: u16,
    limit: usize,
    options: &ServerOptions,
) -> Result<Server>
where
    F: Fn(StreamReader, StreamWriter) -> Fut + 'static,
    Fut: StdFuture<Output = Result<()>> + 'static,
{
    start_server_hosts(cb, &[host], port, limit, options).await
}

/// asyncio's `start_server(client_connected_cb, host=[h1, h2, ...], port,
/// limit=..., ...)`: one stream server on every address of every host
/// in `hosts`, as [`EventLoop::create_server_hosts`] binds them, with a
/// reader `limit` for each connection.
///
/// ```
/// use tulip::ServerOptions;
/// tulip::run(async {
///     let server = tulip::start_server_hosts(|_r, w| async move {
///         w.write(b"hi\n")?;
///         w.drain().await
///     }, &["127.0.0.1", "127.0.0.2"], 0, tulip::DEFAULT_LIMIT, &ServerOptions::new()).await?;
///     for addr in server.local_addrs() {
///         let (r, _w) = tulip::open_connection(&addr.ip().to_string(), addr.port()).await?;
///         assert_eq!(r.readline().await?, b"hi\n");
///     }
///     server.close();
///     Ok(())
/// }).unwrap();
/// ```
pub async fn start_server_hosts<F, Fut>(
    cb: F,
    hosts: &[&str],
    port: u16,
    limit: usize,
    options: &ServerOptions,
) -> Result<Server>
where
    F: Fn(StreamReader, StreamWriter) -> Fut + 'static,
    Fut: StdFuture<Output = Result<()>> + 'static,
{
    let lp = get_running_loop()?;
    let factory = stream_factory(&lp, cb, limit);
    lp.create_server_hosts(factory, hosts, port, options).await
}

/// asyncio's `start_server(client_connected_cb, sock=sock, limit=...)`: a
/// stream server on an already bound TCP socket, which it makes listen
/// (backlog 100) and serves at once, as
/// [`EventLoop::create_server_sock`] does; each connection's reader has
/// the `limit`.
///
/// ```
/// tulip::run(async {
///     let sock = std::net::TcpListener::bind("127.0.0.1:0")?;
///     let addr = sock.local_addr()?;
///     let server = tulip::start_server_sock(|reader, writer| async move {
///         writer.write(&reader.limit().to_string().into_bytes())?;
///         writer.drain().await
///     }, sock, 1000)?;
///     let (reader, _writer) = tulip::open_connection("127.0.0.1", addr.port()).await?;
///     assert_eq!(reader.read_to_eof().await?, b"1000");
///     server.close();
///     Ok(())
/// }).unwrap();
/// ```
pub fn start_server_sock<F, Fut>(cb: F, sock: TcpListener, limit: usize) -> Result<Server>
where
    F: Fn(StreamReader, StreamWriter) -> Fut + 'static,
    Fut: StdFuture<Output = Result<()>> + 'static,
{
    let lp = get_running_loop()?;
    let factory = stream_factory(&lp, cb, limit);
    lp.create_server_sock(factory, sock)
}

/// The protocol factory of a stream server: a reader of `limit` and a
/// `StreamReaderProtocol` that runs `cb` for each connection.
fn stream_factory<F, Fut>(
    lp: &EventLoop,
    cb: F,
    limit: usize,
) -> impl Fn() -> Rc<StreamReaderProtocol> + 'static
where
    F: Fn(StreamReader, StreamWriter) -> Fut + 'static,
    Fut: StdFuture<Output = Result<()>> + 'static,
{
    let cb = client_cb(lp, cb);
    let lp = LoopRef::new(lp.clone());
    move || {
        let reader = StreamReader::with_loop(&lp, limit);
        Rc::new(StreamReaderProtocol::new(&lp, reader, Some(cb.clone())))
    }
}

/// asyncio's `start_unix_server(client_connected_cb, path)`.
pub async fn start_unix_server<F, Fut>(cb: F, path: impl AsRef<Path>) -> Result<Server>
where
    F: Fn(StreamReader, StreamWriter) -> Fut + 'static,
    Fut: StdFuture<Output = Result<()>> + 'static,
{
    start_unix_server_with(cb, path, DEFAULT_LIMIT, &ServerOptions::default()).await
}

/// asyncio's `start_unix_server(client_connected_cb, path, limit=...,
/// backlog=..., start_serving=..., cleanup_socket=...)`: the backlog,
/// `start_serving` and `cleanup_socket` of the [`ServerOptions`] apply,
/// the others are for TCP.
pub async fn start_unix_server_with<F, Fut>(
    cb: F,
    path: impl AsRef<Path>,
    limit: usize,
    options: &ServerOptions,
) -> Result<Server>
where
    F: Fn(StreamReader, StreamWriter) -> Fut + 'static,
    Fut: StdFuture<Output = Result<()>> + 'static,
{
    let lp = get_running_loop()?;
    let factory = stream_factory(&lp, cb, limit);
    lp.create_unix_server_with(factory, path, options)
}

/// asyncio's `start_unix_server(client_connected_cb, sock=sock, limit=...,
/// backlog=..., start_serving=..., cleanup_socket=...)`: a stream server
/// on an already bound Unix socket, which it makes listen with the
/// backlog of `options`, as [`EventLoop::create_unix_server_sock`] does
/// (with `cleanup_socket`, the default, closing the server removes the
/// socket's file while it is still the one bound); each connection's
/// reader has the `limit`.
///
/// ```
/// use tulip::ServerOptions;
/// tulip::run(async {
///     let dir = std::env::temp_dir().join(format!("tulip-doc-ussock-{}", std::process::id()));
///     std::fs::create_dir_all(&dir)?;
///     let path = dir.join("echo.sock");
///     let sock = std::os::unix::net::UnixListener::bind(&path)?;
///     let server = tulip::start_unix_server_sock(|reader, writer| async move {
///         writer.write(&reader.readline().await?)?;
///         writer.drain().await
///     }, sock, tulip::DEFAULT_LIMIT, &ServerOptions::new())?;
///     let (reader, writer) = tulip::open_unix_connection(&path).await?;
///     writer.write(b"hi\n")?;
///     assert_eq!(reader.readline().await?, b"hi\n");
///     server.close();
///     assert!(!path.exists());
///     std::fs::remove_dir_all(&dir)?;
///     Ok(())
/// }).unwrap();
/// ```
pub fn start_unix_server_sock<F, Fut>(
    cb: F,
    sock: UnixListener,
    limit: usize,
    options: &ServerOptions,
) -> Result<Server>
where
    F: Fn(StreamReader, StreamWriter) -> Fut + 'static,
    Fut: StdFuture<Output = Result<()>> + 'static,
{
    let lp = get_running_loop()?;
    let factory = stream_factory(&lp, cb, limit);
    lp.create_unix_server_sock(factory, sock, options)
}
