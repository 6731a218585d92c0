//! The `pinger` binary: parse the options, expand the targets, sweep on the
//! tulip event loop, report.
//!
//! Ctrl-C: the first one stops the sweep ([`Stop::stop`]: no new probe,
//! running children killed and reaped), prints what was found and exits 130;
//! a second one exits 130 at once.

use std::cell::{Cell, RefCell};
use std::io::{IsTerminal, Write};
use std::rc::Rc;
use std::time::Instant;

use pinger::cli::{clap_exit_code, parse_args, Cli};
use pinger::error::EXIT_INTERRUPTED;
use pinger::output::{self, OutputOptions};
use pinger::ping::resolve_ping;
use pinger::progress::Progress;
use pinger::sweep::{self, Outcome, PingProber, Stop, Summary};
use pinger::targets::DEFAULT_TARGET;
use pinger::Error;

fn main() {
    let code = match parse_args(std::env::args_os()) {
        Ok(cli) => match run(&cli) {
            Ok(code) => code,
            Err(err) => {
                eprintln!("pinger: {err}");
                err.exit_code()
            }
        },
        Err(err) => {
            // Help and version go to stdout, usage errors to stderr.
            let _ = err.print();
            clap_exit_code(&err)
        }
    };
    std::process::exit(code);
}

/// One sweep, start to finish; returns the exit code.
fn run(cli: &Cli) -> Result<i32, Error> {
    let selection = cli.selection()?;
    let ping = resolve_ping(std::env::var_os("PATH").as_deref())?;
    if selection.defaulted {
        eprintln!("pinger: no target given, sweeping {DEFAULT_TARGET} (loopback)");
    }
    let cfg = cli.sweep_config(ping);
    let hosts = selection.hosts;
    let spawn_threads = cli.spawn_threads;
    let total = hosts.len();

    let start = Instant::now();
    let progress = Rc::new(RefCell::new(Progress::new(total)));
    let swept = {
        let progress = progress.clone();
        tulip::run(async move {
            let stop = Stop::new();
            let lp = tulip::get_running_loop()?;
            let presses = Cell::new(0u32);
            let stopper = stop.clone();
            lp.add_signal_handler(libc::SIGINT, move || {
                presses.set(presses.get() + 1);
                if presses.get() == 1 {
                    stopper.stop();
                } else {
                    // Exit at once, but leave no child running or unreaped
                    // (not every init reaps orphans promptly).
                    stopper.kill_and_reap_now();
                    let _ = writeln!(std::io::stderr(), "\npinger: interrupted again, exiting");
                    std::process::exit(EXIT_INTERRUPTED);
                }
            })?;
            let prober = PingProber::with_spawn_threads(spawn_threads);
            let (mut done, mut up) = (0, 0);
            let outcome = sweep::run(&hosts, &cfg, prober, &stop, move |probe| {
                done += 1;
                up += usize::from(probe.up);
                progress.borrow_mut().update(done, up);
            })
            .await;
            // From here on a Ctrl-C simply ends the process.
            lp.remove_signal_handler(libc::SIGINT)?;
            Ok(outcome)
        })
    };
    progress.borrow_mut().finish();
    let Outcome {
        results,
        interrupted,
    } = match swept {
        Ok(outcome) => outcome?,
        // Ctrl-C before our handler was in place: tulip's runner cancelled us.
        Err(tulip::Error::Interrupted) => return Ok(EXIT_INTERRUPTED),
        Err(e) => return Err(Error::EventLoop(e)),
    };
    let summary = Summary::from_results(&results, start.elapsed());

    let stdout = std::io::stdout();
    let opts = OutputOptions {
        format: cli.format(),
        filter: cli.filter(),
        color: output::use_color(
            stdout.is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
            cli.no_color,
        ),
        elapsed: cli.elapsed,
    };
    let mut out = stdout.lock();
    output::write_results(&mut out, &results, &summary, &opts).map_err(Error::Output)?;

    let mut err = std::io::stderr().lock();
    if cli.stats {
        let _ = write!(err, "{}", output::stats_block(&summary));
    }
    if interrupted {
        let _ = writeln!(
            err,
            "pinger: interrupted: {} of {total} addresses decided",
            results.len()
        );
    }
    let _ = writeln!(err, "{}", output::summary_line(&summary));
    if interrupted {
        return Ok(EXIT_INTERRUPTED);
    }
    Ok(sweep::exit_code(&summary, cli.exit_zero_if_any_up))
}
