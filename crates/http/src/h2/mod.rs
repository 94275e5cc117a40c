//! HTTP/2 without I/O: frames ([`frame`]), HPACK as an encoder that never indexes needs it
//! ([`hpack`], [`huffman`]) and a decoder with the client's dynamic table ([`table`]), the
//! blast's client connection ([`client`]) and a server connection ([`server`]: written for
//! the proxy's clients, not yet serving them). Why not the `h2` crate: benches/RESULTS.md
//! (issues 30 and 31).

pub mod client;
pub mod frame;
pub mod hpack;
pub mod huffman;
pub mod server;
pub mod table;

pub use client::{Client, Config, ConnError, Ended};
