//! Per-task context values (the contextvars counterpart, seed S3.10).

use tulip::{create_task, sleep, ContextVar, TaskGroup};

static REQUEST_ID: ContextVar<u32> = ContextVar::new("request_id");
static USER: ContextVar<String> = ContextVar::new("user");

#[test]
fn child_inherits_a_copy_of_the_creators_context() {
    tulip::run(async {
        assert_eq!(REQUEST_ID.get(), None);
        REQUEST_ID.set(1)?;
        USER.set("ann".into())?;
        let child = create_task(async {
            let seen = (REQUEST_ID.get(), USER.get());
            REQUEST_ID.set(2)?; // the child's own copy
            sleep(0.001).await?;
            let grandchild = create_task(async { Ok(REQUEST_ID.get()) })?;
            Ok((seen, grandchild.await?))
        })?;
        // Set after the child was created: the child does not see it.
        USER.set("bob".into())?;
        let ((id, user), grand) = child.await?;
        assert_eq!((id, user.as_deref()), (Some(1), Some("ann")));
        assert_eq!(grand, Some(2), "inherited from the child");
        assert_eq!(
            REQUEST_ID.get(),
            Some(1),
            "the parent never sees the child's set"
        );
        assert_eq!(USER.get().as_deref(), Some("bob"));
        let old = REQUEST_ID.set(5)?;
        REQUEST_ID.reset(old)?;
        assert_eq!(REQUEST_ID.get(), Some(1));
        Ok(())
    })
    .unwrap();
}

#[test]
fn taskgroup_children_inherit_and_set_outside_a_task_fails() {
    assert!(REQUEST_ID.set(3).is_err(), "no task, no context");
    assert_eq!(REQUEST_ID.get_or(7), 7);
    tulip::run(async {
        REQUEST_ID.set(9)?;
        let (a, b) = TaskGroup::run(|tg| async move {
            let a = tg.create_task(async { Ok(REQUEST_ID.get()) })?;
            let b = tg.create_task(async { Ok(REQUEST_ID.get()) })?;
            Ok((a, b))
        })
        .await?;
        assert_eq!((a.result()?, b.result()?), (Some(9), Some(9)));
        Ok(())
    })
    .unwrap();
}
