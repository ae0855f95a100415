//! The one integration-test binary: a module per concern, shared helpers in `support`.

mod support;

mod bad_input;
mod contract;
mod cxone;
mod dead_letter;
mod http;
mod kafka;
mod stack;
