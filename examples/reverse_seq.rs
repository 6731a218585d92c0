//! S4.6 (seed 004): `coro(seq)` sleeps `max(seq)` s and returns the reversed
//! list; awaited via `create_task`, `gather`, and `as_completed`. About
//! 3 + 10 + 10 s; `--scale 0.1` (or `TULIP_TIME_SCALE=0.1`) runs it faster.
//! `type(t)` prints the Rust type's name (the seed: `<class '_asyncio.Task'>`).

#[path = "support/cli.rs"]
mod cli;
#[path = "support/clock.rs"]
mod clock;

use cli::secs;

/// "IO" wait time is proportional to the max element.
async fn coro(seq: Vec<u32>) -> tulip::Result<Vec<u32>> {
    tulip::sleep(secs(f64::from(*seq.iter().max().unwrap_or(&0)))).await?;
    Ok(seq.into_iter().rev().collect())
}

fn main() -> tulip::Result<()> {
    // time.strftime('%X'): the local time, HH:MM:SS.
    let at = clock::now_x;
    tulip::run(async {
        let t = tulip::create_task(coro(vec![3, 2, 1]))?;
        t.clone().await?;
        println!("t: type {}", std::any::type_name_of_val(&t));
        println!("t done: {}", if t.done() { "True" } else { "False" });
        Ok(())
    })?;
    let a = tulip::run(async move {
        let t = tulip::create_task(coro(vec![3, 2, 1]))?;
        let t2 = tulip::create_task(coro(vec![10, 5, 0]))?;
        println!("Start: {}", at());
        let a = tulip::gather(vec![t.clone(), t2.clone()]).await?;
        println!("End: {}", at()); // should be 10 seconds later
        println!(
            "Both tasks done: {}",
            if t.done() && t2.done() {
                "True"
            } else {
                "False"
            }
        );
        Ok(a)
    })?;
    println!("{a:?}");
    tulip::run(async move {
        let t = tulip::create_task(coro(vec![3, 2, 1]))?;
        let t2 = tulip::create_task(coro(vec![10, 5, 0]))?;
        println!("Start: {}", at());
        for res in tulip::as_completed(vec![t.clone(), t2.clone()], None) {
            let compl = res.await?;
            println!("res: {compl:?} completed at {}", at());
        }
        println!("End: {}", at());
        println!(
            "Both tasks done: {}",
            if t.done() && t2.done() {
                "True"
            } else {
                "False"
            }
        );
        Ok(())
    })
}
