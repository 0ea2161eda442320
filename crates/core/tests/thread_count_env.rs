//! Without `set_num_threads`, `RAYON_NUM_THREADS` sets the thread count, the caller counted:
//! the global pool started on first use has one worker fewer. A test binary of its own, so
//! that the variable is set before anything starts the pool.

#[test]
fn rayon_num_threads_sets_the_default_count_with_the_caller_counted() {
    std::env::set_var("RAYON_NUM_THREADS", "3");
    assert_eq!(retrograd_core::num_threads(), 3);
    assert_eq!(
        rayon::current_num_threads(),
        2,
        "two pool workers beside this thread"
    );
}
