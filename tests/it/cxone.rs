//! Integration tests: cxone.
