//! The one integration-test binary: a module per concern, shared helpers in `support`.

mod support;

mod bad_input;
mod build_info;
mod chaos;
mod compat;
mod contract;
mod cxone;
mod dead_letter;
mod dedupe;
mod e2e;
mod hostile;
mod http;
mod kafka;
mod kafka_security;
mod lifecycle;
mod operations;
mod oracle;
mod outcome;
mod reload;
mod replicas;
mod sources;
mod stack;
mod what_if;
