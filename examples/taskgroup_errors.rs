//! S3.12 (seed 003): TaskGroup results; an error cancels the siblings; and
//! terminating a group on purpose with an error of your own.
//!
//! Each part is its own program in the seed. In example 2 the seed's last
//! line, `print(f"Task 1: {task1.result()},Task 2: {task2.result()},...")`,
//! never prints: `task2.result()` raises the task's ValueError, which ends
//! that program with a traceback. Here that error goes to stderr and the
//! next part runs.

use tulip::{Error, Result, TaskGroup};

// Example 1: results.
async fn task(num: u32) -> Result<String> {
    tulip::sleep(1.0).await?;
    println!("Task {num} done");
    Ok(format!("Result {num}"))
}

// Example 2: task 2 fails after 2 s; task 3 is cancelled.
async fn task_b(num: u32) -> Result<String> {
    tulip::sleep(f64::from(num)).await?;
    if num == 2 {
        return Err(Error::msg("Task 2 encountered an error!"));
    }
    println!("Task {num} done");
    Ok(format!("Result {num}"))
}

// Example 3: terminating a group on purpose.
async fn force_terminate_task_group() -> Result<()> {
    Err(Error::msg("TerminateTaskGroup"))
}

async fn job(task_id: u32, sleep_time: f64) -> Result<()> {
    println!("Task {task_id}: start");
    tulip::sleep(sleep_time).await?;
    println!("Task {task_id}: done");
    Ok(())
}

// Example 4: automatic cancellation of the siblings.
async fn task_1() -> Result<&'static str> {
    tulip::sleep(1.0).await?;
    println!("Task 1 done");
    Ok("Result 1")
}

async fn task_2() -> Result<&'static str> {
    tulip::sleep(2.0).await?;
    Err(Error::msg("Task 2 failed!"))
}

async fn task_3() -> Result<&'static str> {
    match tulip::sleep(3.0).await {
        Ok(()) => println!("Task 3 done"),
        Err(e) if e.is_cancelled() => println!("Task 3 was cancelled!"),
        Err(e) => return Err(e),
    }
    Ok("Result 3")
}

fn main() -> Result<()> {
    tulip::run(async {
        let (t1, t2, t3) = TaskGroup::run(|tg| async move {
            Ok((
                tg.create_task(task(1))?,
                tg.create_task(task(2))?,
                tg.create_task(task(3))?,
            ))
        })
        .await?;
        println!(
            "Task 1: {},Task 2: {},Task 3: {}",
            t1.result()?,
            t2.result()?,
            t3.result()?
        );
        Ok(())
    })?;
    println!("---");
    let part2 = tulip::run(async {
        let tasks = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let keep = tasks.clone();
        let r = TaskGroup::run(|tg| async move {
            for n in 1..=3 {
                keep.borrow_mut().push(tg.create_task(task_b(n))?);
            }
            Ok(())
        })
        .await;
        if let Err(e) = r {
            println!("An exception occurred: {e}");
        }
        let t = tasks.borrow();
        // task2.result() raises: the `?` ends this program before the print.
        println!(
            "Task 1: {},Task 2: {},Task 3: {}",
            t[0].result()?,
            t[1].result()?,
            t[2].result()?
        );
        Ok(())
    });
    // The seed's program 2 dies here with the uncaught error (a traceback).
    match part2 {
        Err(e) => eprintln!("Traceback (most recent call last):\nValueError: {e}"),
        Ok(()) => unreachable!("task2.result() raises"),
    }
    println!("---");
    tulip::run(async {
        let r = TaskGroup::run(|group| async move {
            let _j1 = group.create_task(job(1, 0.5))?;
            let _j2 = group.create_task(job(2, 1.5))?;
            tulip::sleep(1.0).await?;
            let _stop = group.create_task(force_terminate_task_group())?;
            Ok(())
        })
        .await;
        // `except* TerminateTaskGroup: pass`
        match r {
            Err(Error::Group { errors, .. })
                if errors.iter().all(|e| e.to_string() == "TerminateTaskGroup") => {}
            other => other?,
        }
        Ok(())
    })?;
    println!("---");
    tulip::run(async {
        let r = TaskGroup::run(|tg| async move {
            let _a = tg.create_task(task_1())?;
            let _b = tg.create_task(task_2())?;
            let _c = tg.create_task(task_3())?;
            Ok(())
        })
        .await;
        if let Err(e) = r {
            println!("An exception occurred: {e}");
        }
        Ok(())
    })
}
