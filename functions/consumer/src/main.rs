//! The consumer Lambda's entry point: everything is wired in
//! [`consumer::wiring`], where tests reach it.

use lambda_runtime::Error;

fn main() -> Result<(), Error> {
    // `cargo lambda watch` pins AWS_LAMBDA_MAX_CONCURRENCY to 1 in every
    // function process (and its multi-instance mode crashes the runtime
    // client), so the local stack asks for concurrent invocations through
    // LOCAL_MAX_CONCURRENCY instead. In AWS it is unset: standard Lambda runs
    // one invocation per instance, Managed Instances set the real variable.
    if let Ok(n) = std::env::var("LOCAL_MAX_CONCURRENCY") {
        // SAFETY: no other thread exists yet: the tokio runtime is built below.
        unsafe { std::env::set_var("AWS_LAMBDA_MAX_CONCURRENCY", n) };
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(consumer::wiring::run())
}
