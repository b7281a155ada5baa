//! One file per vendor: request building, label extraction, error sorting.

pub mod standin_local;
