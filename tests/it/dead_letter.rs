//! Integration tests: dead_letter.
