//! StreamReader, StreamWriter and FlowControl, without sockets (fed by hand
//! and through fake transports). Socket-level stream tests are in
//! `tests/stream_sockets.rs`.

mod common;

use std::cell::{Cell, RefCell};
use std::future::Future as _;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use tulip::{
    BaseTransport, Error, EventLoop, ExtraInfo, FlowControl, Protocol, ReadTransport, StreamReader,
    StreamReaderProtocol, StreamWriter, WriteTransport,
};

/// A read transport that records pause/resume calls.
#[derive(Default)]
struct FakeRead {
    reading: Cell<bool>,
    pauses: Cell<u32>,
    resumes: Cell<u32>,
}

impl BaseTransport for FakeRead {
    fn get_extra_info(&self, _: &str) -> Option<ExtraInfo> {
        None
    }
    fn is_closing(&self) -> bool {
        false
    }
    fn close(&self) {}
}

impl ReadTransport for FakeRead {
    fn is_reading(&self) -> bool {
        self.reading.get()
    }
    fn pause_reading(&self) {
        self.reading.set(false);
        self.pauses.set(self.pauses.get() + 1);
    }
    fn resume_reading(&self) {
        self.reading.set(true);
        self.resumes.set(self.resumes.get() + 1);
    }
}

/// A write transport that keeps what it is given.
#[derive(Default)]
struct FakeWrite {
    data: RefCell<Vec<u8>>,
    closing: Cell<bool>,
    eof: Cell<bool>,
}

impl BaseTransport for FakeWrite {
    fn get_extra_info(&self, name: &str) -> Option<ExtraInfo> {
        (name == "pipe").then_some(ExtraInfo::Fd(7))
    }
    fn is_closing(&self) -> bool {
        self.closing.get()
    }
    fn close(&self) {
        self.closing.set(true);
    }
}

impl WriteTransport for FakeWrite {
    fn set_write_buffer_limits(&self, _: Option<usize>, _: Option<usize>) -> tulip::Result<()> {
        Ok(())
    }
    fn get_write_buffer_limits(&self) -> (usize, usize) {
        (0, 0)
    }
    fn get_write_buffer_size(&self) -> usize {
        0
    }
    fn write(&self, data: &[u8]) -> tulip::Result<()> {
        if self.eof.get() {
            return Err(Error::Runtime("write after write_eof".into()));
        }
        self.data.borrow_mut().extend_from_slice(data);
        Ok(())
    }
    fn write_eof(&self) -> tulip::Result<()> {
        self.eof.set(true);
        Ok(())
    }
    fn can_write_eof(&self) -> bool {
        true
    }
    fn abort(&self) {
        self.closing.set(true);
    }
}

/// A shared writer on a `FakeWrite` transport, and its flow control (on
/// the running loop).
fn shared_writer_on_fake() -> tulip::Result<(Rc<StreamWriter>, FlowControl)> {
    let lp = tulip::get_running_loop()?;
    let flow = FlowControl::new(&lp);
    let w = Rc::new(StreamWriter::new(
        Rc::new(FakeWrite::default()),
        flow.clone(),
        None,
    ));
    Ok((w, flow))
}

#[test]
fn read_variants() {
    tulip::run(async {
        let r = StreamReader::new();
        r.feed_data(b"hello\nworld\nxyz");
        assert_eq!(r.read(3).await?, b"hel");
        assert_eq!(r.readline().await?, b"lo\n");
        assert_eq!(r.readexactly(3).await?, b"wor");
        assert_eq!(r.readuntil(b"\n").await?, b"ld\n");
        r.feed_eof();
        assert!(!r.at_eof());
        assert_eq!(r.read(100).await?, b"xyz");
        assert!(r.at_eof());
        assert_eq!(r.read(100).await?, b"");
        assert_eq!(r.readline().await?, b"");
        Ok(())
    })
    .unwrap();
}

#[test]
fn read_waits_for_feed() {
    tulip::run(async {
        let lp = tulip::get_running_loop()?;
        let r = StreamReader::new();
        let feeder = r.clone();
        let _ = lp.call_later(0.01, move || {
            feeder.feed_data(b"ab");
            feeder.feed_data(b"cd\n");
        })?;
        assert_eq!(r.readline().await?, b"abcd\n");
        let feeder = r.clone();
        let _ = lp.call_later(0.01, move || feeder.feed_eof())?;
        assert_eq!(r.read_to_eof().await?, b"");
        Ok(())
    })
    .unwrap();
}

#[test]
fn read_to_eof_collects_everything() {
    tulip::run(async {
        let lp = tulip::get_running_loop()?;
        let r = StreamReader::with_limit(4);
        let feeder = r.clone();
        let _ = lp.call_soon(move || {
            for _ in 0..10 {
                feeder.feed_data(b"0123456789");
            }
            feeder.feed_eof();
        })?;
        assert_eq!(r.read_to_eof().await?.len(), 100);
        Ok(())
    })
    .unwrap();
}

// conformance: N1
#[test]
fn readuntil_limit_overrun_leaves_buffer_intact() {
    common::run_bounded(5.0, async {
        let r = StreamReader::with_limit(8);
        r.feed_data(b"0123456789abcdef");
        match r.readuntil(b"\n").await {
            Err(Error::LimitOverrun { consumed, .. }) => assert!(consumed > 8),
            other => panic!("expected LimitOverrun, got {other:?}"),
        }
        assert_eq!(r.buffered(), 16);
        // Separator found but beyond the limit: also an overrun, buffer kept.
        r.feed_data(b"\n");
        match r.readuntil(b"\n").await {
            Err(Error::LimitOverrun { consumed, .. }) => assert_eq!(consumed, 16),
            other => panic!("expected LimitOverrun, got {other:?}"),
        }
        assert_eq!(r.buffered(), 17);
        assert_eq!(r.readexactly(17).await?, b"0123456789abcdef\n");
        Ok(())
    });
}

// conformance: N1
#[test]
fn readline_past_limit_is_an_error_and_discards() {
    common::run_bounded(5.0, async {
        let r = StreamReader::with_limit(4);
        r.feed_data(b"toolongline\nok\n");
        let e = r.readline().await.unwrap_err();
        assert!(matches!(e, Error::LimitOverrun { .. }), "{e:?}");
        assert_eq!(r.readline().await?, b"ok\n");
        Ok(())
    });
}

/// The limit is inclusive, as asyncio's (`offset > limit`, `isep >
/// limit`): a line of exactly `limit` bytes before its separator is read,
/// whether it comes at once or the separator comes later; one more byte is
/// the overrun.
// conformance: N1
#[test]
fn a_chunk_of_exactly_limit_bytes_is_not_an_overrun() {
    common::run_bounded(5.0, async {
        let lp = tulip::get_running_loop()?;
        let r = StreamReader::with_limit(4);
        r.feed_data(b"abcd\n");
        assert_eq!(r.readline().await?, b"abcd\n");
        // `limit` bytes buffered and no separator yet: wait, do not fail.
        r.feed_data(b"efgh");
        let f = r.clone();
        let _ = lp.call_soon(move || f.feed_data(b"\n"))?;
        assert_eq!(r.readuntil(b"\n").await?, b"efgh\n");
        // One byte more is over the limit, found or not.
        r.feed_data(b"ijklm");
        let e = r.readuntil(b"\n").await.unwrap_err();
        assert!(
            matches!(e, Error::LimitOverrun { consumed: 5, .. }),
            "{e:?}"
        );
        r.feed_data(b"\n");
        let e = r.readuntil(b"\n").await.unwrap_err();
        assert!(
            matches!(e, Error::LimitOverrun { consumed: 5, .. }),
            "{e:?}"
        );
        assert_eq!(r.buffered(), 6);
        Ok(())
    });
}

// conformance: N1
#[test]
fn readexactly_eof_is_incomplete_read() {
    tulip::run(async {
        let r = StreamReader::new();
        r.feed_data(b"abc");
        r.feed_eof();
        match r.readexactly(5).await {
            Err(Error::IncompleteRead { partial, expected }) => {
                assert_eq!(&*partial, b"abc");
                assert_eq!(expected, Some(5));
            }
            other => panic!("expected IncompleteRead, got {other:?}"),
        }
        match r.readuntil(b"\n").await {
            Err(Error::IncompleteRead { partial, expected }) => {
                assert!(partial.is_empty());
                assert_eq!(expected, None);
            }
            other => panic!("expected IncompleteRead, got {other:?}"),
        }
        Ok(())
    })
    .unwrap();
}

#[test]
fn multibyte_separator_split_across_feeds() {
    tulip::run(async {
        let lp = tulip::get_running_loop()?;
        let r = StreamReader::new();
        r.feed_data(b"head\r\n\r");
        let f = r.clone();
        let _ = lp.call_soon(move || f.feed_data(b"\nbody"))?;
        assert_eq!(r.readuntil(b"\r\n\r\n").await?, b"head\r\n\r\n");
        assert_eq!(r.read(10).await?, b"body");
        assert!(r.readuntil(b"").await.is_err());
        Ok(())
    })
    .unwrap();
}

// conformance: N1
#[test]
fn readuntil_any_returns_the_shortest_chunk() {
    tulip::run(async {
        let r = StreamReader::new();
        r.feed_data(b"a\r\nb\nxxAB|y|");
        // The order of the separators does not matter: the chunk that ends first wins.
        assert_eq!(r.readuntil_any(&[b"\r\n", b"\n"]).await?, b"a\r\n");
        assert_eq!(r.readuntil_any(&[b"\n", b"\r\n"]).await?, b"b\n");
        // A longer separator that ends first beats a shorter one found later.
        assert_eq!(r.readuntil_any(&[b"|", b"AB"]).await?, b"xxAB");
        assert_eq!(r.readuntil_any(&[b"AB", b"|"]).await?, b"|");
        assert_eq!(r.readuntil_any(&[b"AB", b"|"]).await?, b"y|");
        assert_eq!(r.buffered(), 0);
        Ok(())
    })
    .unwrap();
}

// conformance: N1
#[test]
fn readuntil_any_waits_for_a_separator_split_across_feeds() {
    tulip::run(async {
        let lp = tulip::get_running_loop()?;
        let r = StreamReader::new();
        r.feed_data(b"head\r\n\r");
        let f = r.clone();
        let _ = lp.call_soon(move || f.feed_data(b"\nbody\n\n"))?;
        // The longest separator straddles the two feeds; the short one
        // (`\n\n`) only comes later, so the long one ends the chunk.
        let list: &[&[u8]] = &[b"\n\n", b"\r\n\r\n"];
        assert_eq!(r.readuntil_any(list).await?, b"head\r\n\r\n");
        assert_eq!(r.readuntil_any(list).await?, b"body\n\n");
        // A separator that arrives with the EOF is still found.
        r.feed_data(b"tail\r\n\r\n");
        r.feed_eof();
        assert_eq!(r.readuntil_any(list).await?, b"tail\r\n\r\n");
        Ok(())
    })
    .unwrap();
}

// conformance: N1
#[test]
fn readuntil_any_limit_overrun_leaves_buffer_intact() {
    common::run_bounded(5.0, async {
        let list: &[&[u8]] = &[b"\r\n", b"\n"];
        // No separator within the limit: everything but the last
        // `longest separator - 1` bytes may be consumed.
        let r = StreamReader::with_limit(8);
        r.feed_data(b"0123456789abcdef");
        match r.readuntil_any(list).await {
            Err(Error::LimitOverrun { consumed, .. }) => assert_eq!(consumed, 16 + 1 - 2),
            other => panic!("expected LimitOverrun, got {other:?}"),
        }
        assert_eq!(r.buffered(), 16);
        // Found beyond the limit: `consumed` is where the separator of the
        // shortest chunk starts (the shorter `\n` on a tie), buffer kept.
        let r = StreamReader::with_limit(4);
        r.feed_data(b"0123456789\r\n");
        match r.readuntil_any(list).await {
            Err(Error::LimitOverrun { consumed, .. }) => assert_eq!(consumed, 11),
            other => panic!("expected LimitOverrun, got {other:?}"),
        }
        assert_eq!(r.buffered(), 12);
        assert_eq!(r.readexactly(12).await?, b"0123456789\r\n");
        Ok(())
    });
}

// conformance: N1
#[test]
fn readuntil_any_eof_is_incomplete_read_and_bad_separators_are_errors() {
    tulip::run(async {
        let r = StreamReader::new();
        r.feed_data(b"abc\r");
        r.feed_eof();
        match r.readuntil_any(&[b"\r\n", b"\n\n"]).await {
            Err(Error::IncompleteRead { partial, expected }) => {
                assert_eq!(&*partial, b"abc\r", "the partial separator comes back too");
                assert_eq!(expected, None);
            }
            other => panic!("expected IncompleteRead, got {other:?}"),
        }
        assert_eq!(r.buffered(), 0);
        let e = r.readuntil_any(&[]).await.unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
        let e = r.readuntil_any(&[b"\n", b""]).await.unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
        Ok(())
    })
    .unwrap();
}

#[test]
fn set_exception_wakes_reader_and_sticks() {
    tulip::run(async {
        let lp = tulip::get_running_loop()?;
        let r = StreamReader::new();
        let f = r.clone();
        let _ = lp.call_soon(move || f.set_exception(Error::msg("boom")))?;
        assert!(r.read(1).await.is_err());
        assert!(r.readline().await.is_err());
        assert!(r.exception().is_some());
        Ok(())
    })
    .unwrap();
}

#[test]
fn two_concurrent_readers_is_an_error() {
    tulip::run(async {
        let r = StreamReader::new();
        let r2 = r.clone();
        let t = tulip::create_task(async move { r2.read(1).await })?;
        tulip::sleep(0.0).await?;
        assert!(matches!(r.read(1).await, Err(Error::Runtime(_))));
        r.feed_data(b"x");
        assert_eq!(t.await?, b"x");
        Ok(())
    })
    .unwrap();
}

#[test]
fn cancelled_read_clears_the_waiter() {
    tulip::run(async {
        let r = StreamReader::new();
        let r2 = r.clone();
        let t = tulip::create_task(async move { r2.read(1).await })?;
        tulip::sleep(0.0).await?;
        t.cancel();
        t.wait_done().await?;
        assert!(t.cancelled());
        r.feed_data(b"y");
        assert_eq!(r.read(1).await?, b"y");
        Ok(())
    })
    .unwrap();
}

// conformance: N2
#[test]
fn reader_pauses_and_resumes_its_transport() {
    tulip::run(async {
        let r = StreamReader::with_limit(10);
        let t = Rc::new(FakeRead::default());
        t.reading.set(true);
        r.set_transport(t.clone());
        r.feed_data(&[b'a'; 20]);
        assert_eq!(t.pauses.get(), 0, "exactly 2 x limit does not pause");
        r.feed_data(b"a");
        assert_eq!(t.pauses.get(), 1);
        assert!(r.is_paused());
        r.feed_data(&[b'a'; 5]);
        assert_eq!(t.pauses.get(), 1, "pause once");
        r.read(10).await?; // 16 left > limit
        assert_eq!(t.resumes.get(), 0);
        r.read(6).await?; // 10 left == limit
        assert_eq!(t.resumes.get(), 1);
        assert!(t.is_reading());
        Ok(())
    })
    .unwrap();
}

/// Every read that brings the buffer down to the limit resumes the
/// transport at once, as each of asyncio's read methods ends with
/// `_maybe_resume_transport()`: not only `read`, and not only at the next
/// wait for data.
// conformance: N2
#[test]
fn every_read_method_resumes_the_transport() {
    tulip::run(async {
        // A reader with limit 4 and a paused transport (9 bytes buffered).
        let paused = |data: &[u8]| {
            let r = StreamReader::with_limit(4);
            let t = Rc::new(FakeRead::default());
            t.reading.set(true);
            r.set_transport(t.clone());
            r.feed_data(data);
            assert!(r.is_paused());
            (r, t)
        };
        let (r, t) = paused(b"012345678");
        assert_eq!(r.readexactly(5).await?, b"01234");
        assert_eq!((r.is_paused(), t.resumes.get()), (false, 1), "readexactly");
        let (r, t) = paused(b"0123\n5678");
        assert_eq!(r.readuntil(b"\n").await?, b"0123\n");
        assert_eq!((r.is_paused(), t.resumes.get()), (false, 1), "readuntil");
        let (r, t) = paused(b"01234\n678");
        assert!(r.readline().await.is_err(), "over the limit");
        assert_eq!((r.is_paused(), t.resumes.get()), (false, 1), "readline");
        assert_eq!(r.buffered(), 3);
        let (r, t) = paused(b"012345678");
        r.feed_eof();
        assert_eq!(r.read_to_eof().await?.len(), 9);
        assert_eq!((r.is_paused(), t.resumes.get()), (false, 1), "read_to_eof");
        Ok(())
    })
    .unwrap();
}

/// A limit too large to double (`usize::MAX` for "no limit") never pauses:
/// no buffer can hold more than 2 x limit bytes. asyncio's limit is a
/// Python int, which does not overflow.
// conformance: N2
#[test]
fn a_limit_too_large_to_double_never_pauses() {
    tulip::run(async {
        for limit in [usize::MAX, usize::MAX / 2 + 1] {
            let r = StreamReader::with_limit(limit);
            let t = Rc::new(FakeRead::default());
            t.reading.set(true);
            r.set_transport(t.clone());
            r.feed_data(b"line\n");
            assert!(!r.is_paused(), "limit {limit}");
            assert_eq!(t.pauses.get(), 0);
            assert_eq!(r.readline().await?, b"line\n");
        }
        Ok(())
    })
    .unwrap();
}

#[test]
fn a_read_to_eof_cut_short_by_a_timeout_leaves_the_data_for_the_next_read() {
    // What pinger relies on: it reads a child's output under a deadline,
    // kills the child when it passes, and reads again for the rest.
    tulip::run(async {
        let r = StreamReader::with_limit(4);
        let r2 = r.clone();
        let feeder = tulip::create_task(async move {
            for chunk in [&b"0123456789"[..], b"abc"] {
                r2.feed_data(chunk);
                tulip::sleep(0.0).await?;
            }
            Ok(())
        })?;
        let cut = tulip::timeout(0.05).run(r.read_to_eof()).await;
        assert!(cut.unwrap_err().is_timeout());
        feeder.await?;
        r.feed_eof();
        assert_eq!(r.read_to_eof().await?, b"0123456789abc");
        Ok(())
    })
    .unwrap();
}

// conformance: N2
#[test]
fn read_to_eof_returns_a_buffer_over_the_limit_whole() {
    tulip::run(async {
        let r = StreamReader::with_limit(4);
        let t = Rc::new(FakeRead::default());
        t.reading.set(true);
        r.set_transport(t.clone());
        r.feed_data(b"0123456789"); // over 2 x limit: paused
        assert!(r.is_paused());
        let r2 = r.clone();
        let task = tulip::create_task(async move { r2.read_to_eof().await })?;
        tulip::sleep(0.0).await?;
        assert!(!r.is_paused(), "the reader took the data and resumed");
        r.feed_data(b"ab");
        r.feed_eof();
        assert_eq!(task.await?, b"0123456789ab");
        Ok(())
    })
    .unwrap();
}

// conformance: N2
#[test]
fn waiting_with_a_paused_transport_resumes_it() {
    tulip::run(async {
        let r = StreamReader::with_limit(4);
        let t = Rc::new(FakeRead::default());
        r.set_transport(t.clone());
        r.feed_data(b"0123456789"); // over 2 x limit
        assert!(r.is_paused());
        let r2 = r.clone();
        let task = tulip::create_task(async move { r2.readexactly(11).await })?;
        tulip::sleep(0.0).await?;
        assert_eq!(
            t.resumes.get(),
            1,
            "a waiting reader must not keep the transport paused"
        );
        r.feed_data(b"x");
        assert_eq!(task.await?, b"0123456789x");
        Ok(())
    })
    .unwrap();
}

// conformance: N2
#[test]
fn concurrent_drains_all_complete() {
    tulip::run(async {
        let (w, flow) = shared_writer_on_fake()?;
        w.drain().await?; // not paused: at once
        flow.pause_writing();
        let mut tasks = Vec::new();
        for _ in 0..5 {
            let w = w.clone();
            tasks.push(tulip::create_task(async move { w.drain().await })?);
        }
        tulip::sleep(0.01).await?;
        assert!(tasks.iter().all(|t| !t.done()));
        flow.resume_writing();
        for t in tasks {
            t.await?;
        }
        Ok(())
    })
    .unwrap();
}

// conformance: N2
#[test]
fn drain_after_connection_lost_fails() {
    tulip::run(async {
        let (w, flow) = shared_writer_on_fake()?;
        flow.pause_writing();
        let w2 = w.clone();
        let t = tulip::create_task(async move { w2.drain().await })?;
        tulip::sleep(0.0).await?;
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        flow.connection_lost(Some(reset.into()));
        assert_eq!(
            t.await.unwrap_err().io_kind(),
            Some(std::io::ErrorKind::ConnectionReset)
        );
        assert!(w.drain().await.is_err());
        assert!(w.wait_closed().await.is_err());
        Ok(())
    })
    .unwrap();
}

/// drain() raises the reader's error first (asyncio: `exc =
/// self._reader.exception(); if exc is not None: raise exc`), so a
/// connection lost with, say, a timeout reports the timeout, not the
/// generic reset of `_drain_helper`.
// conformance: N2
#[test]
fn drain_raises_the_readers_error() {
    tulip::run(async {
        let lp = tulip::get_running_loop()?;
        let reader = StreamReader::new();
        let proto = StreamReaderProtocol::new(&lp, reader.clone(), None);
        let w = StreamWriter::new(
            Rc::new(FakeWrite::default()),
            proto.flow_control().clone(),
            Some(reader.clone()),
        );
        let timed_out = std::io::Error::from(std::io::ErrorKind::TimedOut);
        proto.connection_lost(Some(timed_out.into()));
        let err = w.drain().await.unwrap_err();
        assert_eq!(err.io_kind(), Some(std::io::ErrorKind::TimedOut), "{err:?}");
        // Without a connection loss too: the reader's error is enough.
        let reader = StreamReader::new();
        let w = StreamWriter::new(
            Rc::new(FakeWrite::default()),
            FlowControl::new(&lp),
            Some(reader.clone()),
        );
        reader.set_exception(Error::msg("boom"));
        let err = w.drain().await.unwrap_err();
        assert!(err.to_string().contains("boom"), "{err:?}");
        Ok(())
    })
    .unwrap();
}

/// drain() on a closing transport yields once even when the connection is
/// already lost, as asyncio's (`if self._transport.is_closing(): await
/// sleep(0)`), so a loop of write() and drain() that goes on past the
/// errors still lets the other tasks run.
// conformance: N2
#[test]
fn drain_on_a_lost_connection_still_yields() {
    tulip::run(async {
        let lp = tulip::get_running_loop()?;
        let t = Rc::new(FakeWrite::default());
        let flow = FlowControl::new(&lp);
        let w = StreamWriter::new(t.clone(), flow.clone(), None);
        w.close();
        flow.connection_lost(None);
        let ran = Rc::new(Cell::new(false));
        let r2 = ran.clone();
        let other = tulip::create_task(async move {
            r2.set(true);
            Ok(())
        })?;
        let err = w.drain().await.unwrap_err();
        assert_eq!(err.io_kind(), Some(std::io::ErrorKind::ConnectionReset));
        assert!(ran.get(), "drain() did not yield");
        other.await
    })
    .unwrap();
}

#[test]
fn writer_forwards_to_transport() {
    tulip::run(async {
        let lp = tulip::get_running_loop()?;
        let t = Rc::new(FakeWrite::default());
        let flow = FlowControl::new(&lp);
        let w = StreamWriter::new(t.clone(), flow.clone(), None);
        w.write(b"a")?;
        w.writelines(&[b"b", b"c"])?;
        assert!(w.can_write_eof());
        w.write_eof()?;
        assert!(w.write(b"d").is_err());
        assert_eq!(&*t.data.borrow(), b"abc");
        assert_eq!(w.get_extra_info("pipe").and_then(|i| i.as_fd()), Some(7));
        w.close();
        assert!(w.is_closing());
        flow.connection_lost(None);
        w.wait_closed().await?;
        Ok(())
    })
    .unwrap();
}

#[test]
fn dropping_an_open_writer_closes_its_transport() {
    tulip::run(async {
        let lp = tulip::get_running_loop()?;
        let t = Rc::new(FakeWrite::default());
        drop(StreamWriter::new(t.clone(), FlowControl::new(&lp), None));
        assert!(t.closing.get());
        Ok(())
    })
    .unwrap();
}

thread_local! {
    /// What [`RunsOnWake`] runs when it is woken.
    static ON_WAKE: RefCell<Option<Box<dyn Fn()>>> = const { RefCell::new(None) };
}

/// A waker that runs code at once when woken, as a plain executor that
/// polls inline may: whoever wakes it must hold no borrow.
struct RunsOnWake;

impl Wake for RunsOnWake {
    fn wake(self: Arc<Self>) {
        ON_WAKE.with(|f| {
            if let Some(f) = f.borrow().as_ref() {
                f();
            }
        });
    }
}

/// The protocol feeds its reader with no borrow of its own held: the
/// reader's wake-up may run code that calls back into the protocol (here
/// `connection_lost`, which takes the reader out).
#[test]
fn protocol_wakes_its_reader_with_no_borrow_held() {
    for eof in [false, true] {
        let lp = EventLoop::new().unwrap();
        let reader = StreamReader::with_loop(&lp, 16);
        let proto = Rc::new(StreamReaderProtocol::new(&lp, reader.clone(), None));
        let waker = Waker::from(Arc::new(RunsOnWake));
        let mut cx = Context::from_waker(&waker);
        let mut read = Box::pin(reader.read(10));
        assert!(read.as_mut().poll(&mut cx).is_pending());
        let p2 = proto.clone();
        ON_WAKE.with(|f| *f.borrow_mut() = Some(Box::new(move || p2.connection_lost(None))));
        if eof {
            assert!(proto.eof_received());
        } else {
            proto.data_received(b"x");
        }
        ON_WAKE.with(|f| f.borrow_mut().take());
        let want: &[u8] = if eof { b"" } else { b"x" };
        match read.as_mut().poll(&mut cx) {
            Poll::Ready(got) => assert_eq!(got.unwrap(), want),
            Poll::Pending => panic!("the reader was not woken"),
        }
        assert!(reader.at_eof());
        drop(read);
        lp.close().unwrap();
    }
}

#[test]
fn a_drained_reader_gives_back_the_memory_of_a_burst() {
    if common::rerun_alone("a_drained_reader_gives_back_the_memory_of_a_burst") {
        return;
    }
    // asyncio's reader buffer is a bytearray, which shrinks as reads take
    // its bytes (`del buf[:n]` reallocates once under half full). A reader
    // that once buffered 32 MiB and was read empty, a piece at a time,
    // must not keep 32 MiB for the rest of the connection.
    tulip::run(async {
        const TOTAL: usize = 32 << 20;
        let r = StreamReader::with_limit(usize::MAX);
        let before = common::heap_in_use() as isize;
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..TOTAL / chunk.len() {
            r.feed_data(&chunk);
        }
        drop(chunk);
        for _ in 0..TOTAL / (1 << 20) {
            assert_eq!(r.readexactly(1 << 20).await?.len(), 1 << 20);
        }
        assert_eq!(r.buffered(), 0);
        let kept = common::heap_in_use() as isize - before;
        assert!(
            kept < (1 << 20),
            "the empty reader still holds {kept} bytes after a {TOTAL}-byte burst"
        );
        Ok(())
    })
    .unwrap();
}

/// A read that finds nothing (at EOF) returns an empty vector that holds
/// no memory: not the reader's buffer block, swapped out for a new one.
#[test]
fn a_read_at_eof_hands_over_no_buffer() {
    tulip::run(async {
        let r = StreamReader::with_limit(1 << 20);
        r.feed_data(&[7; 100_000]);
        assert_eq!(r.read(100_000).await?.len(), 100_000);
        r.feed_eof();
        for _ in 0..3 {
            let empty = r.read(10).await?;
            assert!(empty.is_empty());
            assert_eq!(empty.capacity(), 0, "the buffer's block went with it");
        }
        assert_eq!(r.read_to_eof().await?.capacity(), 0);
        Ok(())
    })
    .unwrap();
}
