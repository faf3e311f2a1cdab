//! Integration tests against the running local stack (`make test` starts it).
//! One test binary, as in zero-to-production's `tests/api/`, so the stack's
//! clients are set up once per test and the binary is linked once.

mod campaign;
mod cancel;
mod consumer;
mod limits;
mod producer;
mod scale;
mod stack_e2e;
