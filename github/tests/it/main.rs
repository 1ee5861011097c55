//! Integration tests of the GitHub adapters against an HTTP-level fake GitHub (wiremock on
//! 127.0.0.1) serving real GraphQL and REST response shapes from `tests/fixtures/`.

mod auth;
mod board;
mod pulls;
mod shape;
mod support;
