//! The `pinger` binary: parse the options, expand the targets, sweep, report.
//!
//! The sweep itself still runs on the blocking stand-in driver
//! ([`pinger::sweep::run_blocking`]); the tulip-based driver replaces that one
//! call.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use pinger::cli::{clap_exit_code, parse_args, Cli};
use pinger::output::{self, OutputOptions};
use pinger::ping::resolve_ping;
use pinger::progress::Progress;
use pinger::sweep::{self, StdProber, Summary};
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
    let total = selection.hosts.len();

    let start = Instant::now();
    let mut progress = Progress::new(total);
    let (mut done, mut up) = (0, 0);
    // Seam: the tulip driver takes the place of this call.
    let results = sweep::run_blocking(&mut StdProber, &selection.hosts, &cfg, |probe| {
        done += 1;
        up += usize::from(probe.up);
        progress.update(done, up);
    })?;
    progress.finish();
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
    let _ = writeln!(err, "{}", output::summary_line(&summary));
    Ok(sweep::exit_code(&summary, cli.exit_zero_if_any_up))
}
