//! Protocols: what a transport calls when something happens. Mirrors
//! `Lib/asyncio/protocols.py` (`Protocol`, `DatagramProtocol`).
//!
//! A protocol is the callback side of a connection. The transport calls it;
//! the protocol answers by calling the transport (`write`, `close`,
//! `pause_reading`). Methods take `&self`: the transport holds an
//! `Rc<dyn Protocol>`, and a protocol keeps its state in cells, as asyncio's
//! objects do. Methods are called synchronously from the loop's callbacks;
//! they must not block.
//!
//! ```
//! use std::rc::Rc;
//! use std::cell::RefCell;
//! use tulip::{Protocol, Transport};
//!
//! /// asyncio's classic echo protocol.
//! #[derive(Default)]
//! struct Echo(RefCell<Option<Rc<dyn Transport>>>);
//!
//! impl Protocol for Echo {
//!     fn connection_made(&self, transport: Rc<dyn Transport>) {
//!         *self.0.borrow_mut() = Some(transport);
//!     }
//!     fn data_received(&self, data: &[u8]) {
//!         let t = self.0.borrow().clone().expect("connected");
//!         let _ = t.write(data);
//!     }
//! }
//! # let _ = Echo::default();
//! ```
//!
//! # Invariants
//! (what a transport promises its protocol, asyncio's state machine)
//! - `connection_made` is called exactly once, first.
//! - Then `data_received` any number of times, then at most one
//!   `eof_received`; no `data_received` after `eof_received`.
//! - `connection_lost` is called exactly once, last; nothing after it.
//! - `pause_writing` and `resume_writing` alternate, starting with
//!   `pause_writing`; they come between `connection_made` and `connection_lost`.
//! - No transport borrow is held while a protocol method runs, so the
//!   protocol may call back into the transport.

use std::rc::Rc;

use crate::error::Error;
use crate::transports::{DatagramAddr, DatagramTransport, Transport};

/// asyncio's `Protocol`: the callbacks of a stream connection.
pub trait Protocol {
    /// The connection is up. Keep `transport` to write, close, pause.
    fn connection_made(&self, transport: Rc<dyn Transport>) {
        let _ = transport;
    }

    /// Bytes arrived. `data` is borrowed from the transport's read buffer:
    /// copy what you keep.
    fn data_received(&self, data: &[u8]) {
        let _ = data;
    }

    /// The peer closed its write end (a half-close, or a plain close).
    /// Return true to keep the connection half-open (so you may still
    /// write); false closes the transport, as asyncio does.
    fn eof_received(&self) -> bool {
        false
    }

    /// The connection is gone: `None` for a normal close or EOF, the error
    /// otherwise (e.g. a reset).
    fn connection_lost(&self, exc: Option<Error>) {
        let _ = exc;
    }

    /// The transport's write buffer went above its high-water mark.
    fn pause_writing(&self) {}

    /// The transport's write buffer drained to its low-water mark.
    fn resume_writing(&self) {}
}

/// asyncio's `DatagramProtocol`: the callbacks of a UDP endpoint.
pub trait DatagramProtocol {
    /// The endpoint is ready.
    fn connection_made(&self, transport: Rc<dyn DatagramTransport>) {
        let _ = transport;
    }

    /// A datagram arrived from `addr` (an IP address and port for UDP, a
    /// path for Unix datagrams). `data` is borrowed from the transport's
    /// buffer: copy what you keep.
    fn datagram_received(&self, data: &[u8], addr: DatagramAddr) {
        let _ = (data, addr);
    }

    /// A send or receive failed (e.g. ICMP port unreachable on a connected
    /// socket). The endpoint stays open.
    fn error_received(&self, exc: Error) {
        let _ = exc;
    }

    /// The endpoint is closed.
    fn connection_lost(&self, exc: Option<Error>) {
        let _ = exc;
    }

    /// The send queue went above its high-water mark.
    fn pause_writing(&self) {}

    /// The send queue drained.
    fn resume_writing(&self) {}
}
