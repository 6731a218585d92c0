//! S3.14 (seed 003): `gather` keeps argument order; with
//! `return_exceptions=False` the first error propagates; with `True` the
//! errors come back in the results list. Each part runs in its own
//! `tulip::run`, as each is its own program in the seed (3 s + 2 s + 3 s).
//!
//! `--scale 0.1` (or `TULIP_TIME_SCALE=0.1`) runs it ten times faster (for the tests).

#[path = "support/cli.rs"]
mod cli;

use cli::secs;
use tulip::{Error, Result};

async fn task(num: u32, fail_two: bool) -> Result<String> {
    tulip::sleep(secs(f64::from(num))).await?;
    if fail_two && num == 2 {
        return Err(Error::msg(format!("Task {num} failed!")));
    }
    println!("Task {num} completed");
    Ok(format!("Num {num}"))
}

/// A list of strings the way Python prints it: `['a', 'b']`.
fn py_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("'{s}'")).collect();
    format!("[{}]", quoted.join(", "))
}

fn main() -> Result<()> {
    // Example 1: results in argument order.
    tulip::run(async {
        let results = tulip::gather((1..4).map(|i| task(i, false))).await?;
        println!("Results: {}", py_list(&results));
        Ok(())
    })?;
    // Example 2: return_exceptions=False — the first error propagates.
    tulip::run(async {
        match tulip::gather((1..4).map(|i| task(i, true))).await {
            Ok(results) => println!("Results: {}", py_list(&results)),
            Err(e) => println!("An error occurred: {e}"),
        }
        Ok(())
    })?;
    // Example 3: return_exceptions=True — errors are results.
    tulip::run(async {
        let results = tulip::gather((1..4).map(|i| task(i, true)))
            .return_exceptions()
            .await?;
        let shown: Vec<String> = results
            .iter()
            .map(|r| match r {
                Ok(v) => format!("'{v}'"),
                Err(e) => format!("ValueError('{e}')"),
            })
            .collect();
        println!("Results: [{}]", shown.join(", "));
        Ok(())
    })
}
