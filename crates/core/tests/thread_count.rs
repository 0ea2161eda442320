//! The thread count counts the calling thread, as `torch.set_num_threads` does: the global
//! rayon pool gets one worker fewer, since the caller takes its own share of every split.
//! A test binary of its own, so that nothing has started the global pool before it.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use retrograd_core::threads::map_claimed;

#[test]
fn the_thread_count_counts_the_caller_and_the_pool_has_one_worker_fewer() {
    retrograd_core::set_num_threads(3).expect("a fresh process: the pool has not started");
    assert_eq!(retrograd_core::num_threads(), 3);
    assert_eq!(
        rayon::current_num_threads(),
        2,
        "two pool workers beside this thread"
    );
    assert!(
        retrograd_core::set_num_threads(2).is_err(),
        "the pool runs already"
    );

    // a shared kernel's items run on this thread and the two workers, no more
    let me = std::thread::current().id();
    let seen = Mutex::new(HashSet::new());
    map_claimed((0..48).collect(), |_: u32| {
        std::thread::sleep(Duration::from_millis(1));
        seen.lock().unwrap().insert(std::thread::current().id());
    });
    let seen = seen.into_inner().unwrap();
    assert!(seen.contains(&me), "the caller took items too");
    assert!(seen.len() <= 3, "{} threads took items", seen.len());

    // on a thread of another pool, that pool's size
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(4)
        .build()
        .unwrap();
    assert_eq!(pool.install(retrograd_core::num_threads), 4);
}
