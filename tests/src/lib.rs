//! End-to-end tests across binaries live in `it/`.
