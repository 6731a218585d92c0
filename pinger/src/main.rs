//! The `pinger` binary: parse the options, expand the targets, sweep on the
//! tulip event loop, report.
//!
//! Ctrl-C (SIGINT), SIGTERM and SIGHUP: the first one stops the sweep
//! ([`Stop::stop`]: no new probe, running children killed and reaped),
//! prints what was found and exits 128 + the signal's number (130, 143,
//! 129); a second one exits at once with that code. Copies of the first
//! within [`SAME_REQUEST`] are the same request (`timeout` sends two).
//! Any of them that is
//! ignored when pinger starts (`nohup`, a script's `trap '' INT`, a
//! background job's SIGINT) is left ignored.

use std::cell::{Cell, RefCell};
use std::io::{IsTerminal, Write};
use std::rc::Rc;
use std::time::{Duration, Instant};

use pinger::cli::{clap_exit_code, parse_args, Cli};
use pinger::error::{exit_code_for_signal, EXIT_INTERRUPTED};
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
                // Best effort, as every stderr line of pinger: a closed
                // stderr must not turn exit 3 or 4 into a panic's 101.
                let _ = writeln!(std::io::stderr(), "pinger: {err}");
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
        let _ = writeln!(
            std::io::stderr(),
            "pinger: no target given, sweeping {DEFAULT_TARGET} (loopback)"
        );
    }
    let cfg = cli.sweep_config(ping);
    let hosts = selection.hosts;
    let spawn_threads = cli.spawn_threads;
    let total = hosts.len();
    let progress_total = usize::try_from(total).unwrap_or(usize::MAX);

    let start = Instant::now();
    // The signal that stopped the sweep, if one did.
    let stopped_by = Rc::new(Cell::new(None));
    // When the first stop signal was handled (see `SAME_REQUEST`).
    let stopped_at = Rc::new(Cell::new(None));
    let progress = Rc::new(RefCell::new(Progress::new(progress_total)));
    let swept = {
        let progress = progress.clone();
        let stopped_by = stopped_by.clone();
        tulip::run(async move {
            let stop = Stop::new();
            let lp = tulip::get_running_loop()?;
            let handled = stop_signals();
            install_stop_handlers(&lp, &stop, &stopped_by, &stopped_at, &handled)?;
            let prober = PingProber::with_spawn_threads(spawn_threads);
            let (mut done, mut up) = (0, 0);
            let outcome = sweep::run(hosts, &cfg, prober, &stop, move |probe| {
                done += 1;
                up += usize::from(probe.up);
                progress.borrow_mut().update(done, up);
            })
            .await;
            // The sweep's own time, without the wait below.
            let elapsed = start.elapsed();
            // A stop signal caught after the loop's last poll is still in
            // tulip's wake-up pipe, unseen by its handler: it stopped the
            // sweep, late. Taken while the handlers are still installed,
            // so that it starts the wait below like any first signal.
            let late = |signo: i32| {
                if lp.take_pending_signals(signo) > 0 && stopped_by.get().is_none() {
                    stopped_by.set(Some(signo));
                    stopped_at.set(Some(Instant::now()));
                }
            };
            handled.iter().for_each(|&signo| late(signo));
            // A copy of the stop signal still on its way (see
            // `SAME_REQUEST`) must find the handler, not the default action.
            if let Some(at) = stopped_at.get() {
                let left = SAME_REQUEST.saturating_sub(at.elapsed());
                if !left.is_zero() {
                    tulip::sleep(left.as_secs_f64()).await?;
                }
            }
            // From here on a Ctrl-C, SIGTERM or SIGHUP simply ends the process.
            // One caught in the instant before is taken as above.
            for &signo in &handled {
                lp.remove_signal_handler(signo)?;
                late(signo);
            }
            Ok(outcome.map(|o| (o, elapsed)))
        })
    };
    progress.borrow_mut().finish();
    let (
        Outcome {
            results,
            mut interrupted,
        },
        elapsed,
    ) = match swept {
        Ok(outcome) => outcome?,
        // Ctrl-C before our handler was in place: tulip's runner cancelled us.
        Err(tulip::Error::Interrupted) => return Ok(EXIT_INTERRUPTED),
        Err(e) => return Err(Error::EventLoop(e)),
    };
    // A stop signal that came after the last probe: every host is decided,
    // and the exit code still says that the user asked to stop.
    interrupted |= stopped_by.get().is_some();
    let summary = Summary {
        targets: total,
        interrupted,
        ..Summary::from_results(&results, elapsed)
    };

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
    match output::write_results(&mut out, &results, &summary, &opts) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => die_by_sigpipe(),
        Err(e) => return Err(Error::Output(e)),
    }

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
        return Ok(stopped_by
            .get()
            .map_or(EXIT_INTERRUPTED, exit_code_for_signal));
    }
    Ok(sweep::exit_code(&summary, cli.exit_zero_if_any_up))
}

/// The reader of stdout went away (`pinger ... | head -1`): end as `cat`
/// or fping would, by SIGPIPE, which shells report as 141 without a word,
/// rather than as a system failure. Rust starts with SIGPIPE ignored, so it
/// is reset first; every child is reaped by now.
fn die_by_sigpipe() -> ! {
    // SAFETY: restoring a signal's default action and raising it take no
    // pointers; no handler of ours runs.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
    std::process::exit(128 + libc::SIGPIPE)
}

/// The signals that stop a sweep the orderly way: Ctrl-C, what `kill` and
/// `timeout` send, and the hangup of the terminal or ssh session (the `ping`
/// children run in a process group of their own, so the hangup reaches only
/// pinger; left to its default action, a silent host's `ping` would outlive
/// pinger until its own `-w` deadline).
const STOP_SIGNALS: [i32; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// The [`STOP_SIGNALS`] pinger handles: those not ignored at start. An
/// ignored one stays ignored, as asyncio's runner installs its SIGINT
/// handler only over the default one: `nohup pinger ...` must survive the
/// hangup, and a script's `trap '' INT TERM` or `pinger &` (a background
/// job without job control starts with SIGINT ignored) must survive the
/// Ctrl-C meant for the script's foreground.
fn stop_signals() -> Vec<i32> {
    STOP_SIGNALS
        .into_iter()
        .filter(|&signo| !is_ignored(signo))
        .collect()
}

/// Whether `signo`'s disposition is `SIG_IGN`.
fn is_ignored(signo: i32) -> bool {
    // SAFETY: a null new action only queries the disposition into `old`,
    // a valid, zeroed out-parameter.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(signo, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN
    }
}

/// Stop signals handled within this long of the first one are copies of
/// the same request, not a second Ctrl-C: `timeout` sends its SIGTERM to
/// pinger and then to pinger's whole process group, systemd sends SIGTERM
/// and SIGHUP together, a terminal hangup comes from the kernel and again
/// from the shell. Far shorter than two presses of Ctrl-C by hand.
const SAME_REQUEST: Duration = Duration::from_millis(100);

/// Installs the handlers of `signals` (see [`stop_signals`]) through tulip's
/// `add_signal_handler`. The first signal, whichever it is, stops the sweep
/// and is remembered in `stopped_by` for the exit code and in `stopped_at`;
/// copies within [`SAME_REQUEST`] are ignored; a second one after that
/// exits at once with 128 + its number, leaving no child running or
/// unreaped (not every init reaps orphans promptly).
fn install_stop_handlers(
    lp: &tulip::EventLoop,
    stop: &Stop,
    stopped_by: &Rc<Cell<Option<i32>>>,
    stopped_at: &Rc<Cell<Option<Instant>>>,
    signals: &[i32],
) -> tulip::Result<()> {
    for &signo in signals {
        let stop = stop.clone();
        let stopped_by = stopped_by.clone();
        let stopped_at = stopped_at.clone();
        lp.add_signal_handler(signo, move || match stopped_at.get() {
            None => {
                stopped_at.set(Some(Instant::now()));
                stopped_by.set(Some(signo));
                stop.stop();
            }
            Some(first) if first.elapsed() < SAME_REQUEST => {}
            Some(_) => {
                stop.kill_and_reap_now();
                let what = match signo {
                    libc::SIGINT => "interrupted",
                    libc::SIGHUP => "hung up",
                    _ => "terminated",
                };
                let _ = writeln!(std::io::stderr(), "\npinger: {what} again, exiting");
                std::process::exit(exit_code_for_signal(signo));
            }
        })?;
    }
    Ok(())
}
