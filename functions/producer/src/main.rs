//! The producer Lambda's entry point: everything is wired in
//! [`producer::wiring`], where tests reach it.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    producer::wiring::run().await
}
