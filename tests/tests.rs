//! End-to-end tests of the `robustify` binary.
