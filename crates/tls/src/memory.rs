//! Two sessions joined in memory, a client and a server that completed their handshake: what
//! the tests and the fuzz target of the read path drive, with no socket and no runtime.

use std::io;

use crate::{ClientConnection, ClientOptions, Need, ServerConnection, Session, Side};

/// A client and a server session after a full handshake (TLS 1.3 unless `tls12`), the
/// client not verifying the server's throwaway certificate.
pub fn connected_pair(tls12: bool) -> io::Result<(Session<ClientConnection>, Session<ServerConnection>)> {
    let (server_config, _) = crate::self_signed(&["localhost"]).map_err(io::Error::other)?;
    let version = tls12.then_some(crate::Version::Tls12);
    let opts = ClientOptions { insecure: true, version, ..Default::default() };
    let client = crate::Client::new(&opts, "localhost").map_err(io::Error::other)?;
    let mut c = Session::new(client.connection().map_err(crate::Failure::from_rustls)?);
    let mut s = Session::new(crate::accept(&server_config).map_err(crate::Failure::from_rustls)?);
    // A handshake is a few flights; more turns than that is a loop.
    for _ in 0..16 {
        let (a, b) = (step(&mut c, &mut s)?, step(&mut s, &mut c)?);
        if a && b && c.outgoing().is_empty() && s.outgoing().is_empty() {
            return Ok((c, s));
        }
    }
    Err(io::Error::other("the in-memory handshake did not complete"))
}

/// One turn of `from`'s handshake, its flight delivered to `to`: whether `from` is done.
pub(crate) fn step<A: Side, B: Side>(from: &mut Session<A>, to: &mut Session<B>) -> io::Result<bool> {
    loop {
        match from.handshake_step()? {
            Need::Send => {
                to.received(from.outgoing());
                from.sent();
            }
            Need::Read => return Ok(false),
            Need::Done => return Ok(true),
        }
    }
}

/// `sender` encrypts `plain`; the ciphertext is handed to `receiver`.
pub fn seal<A: Side>(sender: &mut Session<A>, plain: &[u8]) -> io::Result<Vec<u8>> {
    sender.encrypt(plain)?;
    let sealed = sender.outgoing().to_vec();
    sender.sent();
    Ok(sealed)
}
