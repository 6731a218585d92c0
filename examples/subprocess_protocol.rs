//! Teaching example: the layer under `create_subprocess_exec`. asyncio's
//! documentation shows it with a `DateProtocol`; this is that program,
//! with `date` in place of a Python one-liner:
//!
//! ```python
//! class DateProtocol(asyncio.SubprocessProtocol):
//!     def __init__(self, exit_future):
//!         self.exit_future = exit_future
//!         self.output = bytearray()
//!         self.pipe_closed = False
//!         self.exited = False
//!     def pipe_connection_lost(self, fd, exc):
//!         self.pipe_closed = True
//!         self.check_for_exit()
//!     def pipe_data_received(self, fd, data):
//!         self.output.extend(data)
//!     def process_exited(self):
//!         self.exited = True
//!         # process_exited() method can be called before
//!         # pipe_connection_lost() method: wait until both methods are called.
//!         self.check_for_exit()
//!     def check_for_exit(self):
//!         if self.pipe_closed and self.exited:
//!             self.exit_future.set_result(True)
//!
//! async def get_date():
//!     loop = asyncio.get_running_loop()
//!     exit_future = asyncio.Future(loop=loop)
//!     transport, protocol = await loop.subprocess_exec(
//!         lambda: DateProtocol(exit_future),
//!         'date', '+%Y-%m-%d', stdin=None, stderr=None)
//!     await exit_future
//!     transport.close()
//!     data = bytes(protocol.output)
//!     return data.decode('ascii').rstrip()
//! ```
//!
//! ```text
//! cargo run --example subprocess_protocol
//! ```

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use tulip::subprocess::{Stdio, Stdios};
use tulip::{Error, SubprocessProtocol};

struct DateProtocol {
    exit_future: tulip::Future<bool>,
    output: RefCell<Vec<u8>>,
    pipe_closed: Cell<bool>,
    exited: Cell<bool>,
}

impl DateProtocol {
    fn check_for_exit(&self) {
        if self.pipe_closed.get() && self.exited.get() {
            let _ = self.exit_future.set_result(true);
        }
    }
}

impl SubprocessProtocol for DateProtocol {
    fn pipe_connection_lost(&self, _fd: i32, _exc: Option<Error>) {
        self.pipe_closed.set(true);
        self.check_for_exit();
    }

    fn pipe_data_received(&self, _fd: i32, data: &[u8]) {
        self.output.borrow_mut().extend_from_slice(data);
    }

    fn process_exited(&self) {
        self.exited.set(true);
        // process_exited() can be called before pipe_connection_lost():
        // wait until both were called.
        self.check_for_exit();
    }
}

async fn get_date() -> tulip::Result<String> {
    // The low-level API lives on the loop.
    let lp = tulip::get_running_loop()?;
    let exit_future = lp.create_future();
    // Only stdout is a pipe (asyncio: stdin=None, stderr=None).
    let stdio = Stdios {
        stdout: Stdio::Pipe,
        ..Stdios::default()
    };
    let make = || {
        Rc::new(DateProtocol {
            exit_future: exit_future.clone(),
            output: RefCell::new(Vec::new()),
            pipe_closed: Cell::new(false),
            exited: Cell::new(false),
        })
    };
    let (transport, protocol) = lp
        .subprocess_exec(make, "date", ["+%Y-%m-%d"], stdio)
        .await?;
    // Wait for the exit, through the protocol's process_exited().
    exit_future.await?;
    transport.close();
    println!("return code: {:?}", transport.get_returncode());
    let data = protocol.output.borrow().clone();
    Ok(String::from_utf8_lossy(&data).trim_end().to_string())
}

fn main() -> tulip::Result<()> {
    let date = tulip::run(get_date())?;
    println!("Current date: {date}");
    Ok(())
}
