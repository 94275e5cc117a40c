//! HTTP/2 for the blast's client side, without I/O: frames ([`frame`]), HPACK as a client
//! that never indexes needs it ([`hpack`], [`huffman`]), and a connection's state machine
//! ([`client`]). Why not the `h2` crate: benches/RESULTS.md (issue 30).

pub mod client;
pub mod frame;
pub mod hpack;
pub mod huffman;

pub use client::{Client, Config, ConnError, Ended};
