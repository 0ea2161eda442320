//! The table runner of the bad-input sweep: each row is (what is wrong, a closure calling one
//! public entry point with that input, the substrings the error message must contain). A row
//! passes only when the closure returns `Err` (not `Ok`, not a panic, which `catch_unwind`
//! catches) and the message names the problem.

use std::panic::{catch_unwind, AssertUnwindSafe};

use retrograd::Result;

/// One row of the inventory.
pub struct Case {
    /// What is wrong with the input.
    pub what: &'static str,
    run: Box<dyn FnOnce() -> Result<()>>,
    /// Substrings the error's `Display` must contain (the op, the offending value or shape).
    pub expect: &'static [&'static str],
}

/// Builds a row; the closure's `Ok` value is discarded.
pub fn case<T>(
    what: &'static str,
    f: impl FnOnce() -> Result<T> + 'static,
    expect: &'static [&'static str],
) -> Case {
    Case {
        what,
        run: Box::new(move || f().map(|_| ())),
        expect,
    }
}

/// Runs one row: `Ok(message)` when it errs with every expected substring, else what went wrong.
pub fn verdict(c: Case) -> std::result::Result<String, String> {
    let Case { what, run, expect } = c;
    match catch_unwind(AssertUnwindSafe(run)) {
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(format!("{what}: PANICKED ({msg})"))
        }
        Ok(Ok(())) => Err(format!("{what}: returned Ok, expected an error")),
        Ok(Err(e)) => {
            let msg = e.to_string();
            match expect.iter().find(|s| !msg.contains(*s)) {
                Some(missing) => Err(format!("{what}: message lacks {missing:?}: {msg}")),
                None => Ok(msg),
            }
        }
    }
}

/// Runs a group of rows, prints the inventory (visible with `--nocapture`) and fails listing
/// every row that did not pass.
pub fn run_group(group: &str, cases: Vec<Case>) {
    assert!(!cases.is_empty(), "{group}: empty table");
    let total = cases.len();
    let mut failures = Vec::new();
    for c in cases {
        let what = c.what;
        match verdict(c) {
            Ok(msg) => println!("[{group}] {what}\n    -> {msg}"),
            Err(f) => failures.push(f),
        }
    }
    println!("[{group}] {} of {total} rows pass", total - failures.len());
    assert!(
        failures.is_empty(),
        "{group}: {} of {total} rows failed:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}
