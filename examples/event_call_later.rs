//! S2.26 (seed 002): an Event set by a `call_later` callback.
//!
//! ```python
//! event = asyncio.Event(); print('事件是否设置: {}'.format(event.is_set()))
//! loop.call_later(0.1, functools.partial(set_event, event))
//! await asyncio.wait([test('e1', event), test('e2', event)])
//! print('最终事件状态: {}'.format(event.is_set()))
//! ```

use tulip::{Event, ReturnWhen};

fn set_event(event: &Event) {
    println!("开始设置事件");
    event.set();
}

async fn test(name: &'static str, event: Event) -> tulip::Result<()> {
    println!("{name} 的事件未设置");
    event.wait().await?;
    println!("{name} 的事件已设置");
    Ok(())
}

fn py_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

fn main() -> tulip::Result<()> {
    let lp = tulip::get_event_loop()?;
    let l = lp.clone();
    lp.run_until_complete(async move {
        let event = Event::new();
        println!("事件是否设置: {}", py_bool(event.is_set()));
        let e = event.clone();
        let _ = l.call_later(0.1, move || set_event(&e))?;
        tulip::wait(
            vec![test("e1", event.clone()), test("e2", event.clone())],
            None,
            ReturnWhen::AllCompleted,
        )
        .await?;
        println!("最终事件状态: {}", py_bool(event.is_set()));
        Ok(())
    })?;
    lp.close()
}
