//! The one integration-test binary: a module per concern, shared helpers in `support`.

mod support;

mod bad_input;
mod chaos;
mod contract;
mod cxone;
mod dead_letter;
mod dedupe;
mod e2e;
mod hostile;
mod http;
mod kafka;
mod lifecycle;
mod operations;
mod replicas;
mod sources;
mod stack;
