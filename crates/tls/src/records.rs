//! A client's TLS 1.3 records after the handshake, sealed and opened here with *ring*'s AEADs.
//! rustls runs the handshake, then hands over the traffic keys through its kernel-connection
//! API (`dangerous_into_kernel_connection`, made for kTLS, which this machine's kernel lacks)
//! and keeps what needs its state machine: session tickets, so reconnects resume, and key
//! updates.
//!
//! Why: after the handshake rustls's connection holds state a client never uses again (the
//! connection struct, the handshake deframer's vector, the record layer's queues), and each
//! record it seals or opens allocates. Handing over saves 1.1 KB per connection (10,000 TLS
//! connections: 74.6 MB peak RSS before, 64.0 MB after) and 1.12x the served requests per
//! CPU-second at 64 connections (benches/RESULTS.md).
//! TLS 1.2 sessions stay with rustls: its record layer differs, and so do its tickets.
//!
//! RFC 8446 §5: every record after the handshake is `application_data` on the outside; inside
//! is the plaintext, its real content type, then zero padding.

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use rustls::client::ClientConnectionData;
use rustls::kernel::KernelConnection;
use rustls::{AlertDescription, ConnectionTrafficSecrets, Error, InvalidMessage, PeerMisbehaved};

pub(crate) const HEADER: usize = 5;
const TAG: usize = 16;
/// The most plaintext one record carries (RFC 8446 §5.1).
const MAX_PLAIN: usize = 16_384;
/// The most ciphertext one record carries: plaintext, content type and padding, tag (§5.2).
const MAX_CIPHER: usize = MAX_PLAIN + 256;
/// A post-handshake message longer than this is refused rather than buffered (tickets are
/// a few hundred bytes).
const MAX_MESSAGE: usize = 64 * 1024;

const CHANGE_CIPHER_SPEC: u8 = 20;
pub(crate) const ALERT: u8 = 21;
pub(crate) const HANDSHAKE: u8 = 22;
pub(crate) const APPLICATION_DATA: u8 = 23;
pub(crate) const NEW_SESSION_TICKET: u8 = 4;
pub(crate) const KEY_UPDATE: u8 = 24;
const CLOSE_NOTIFY: u8 = 0;
const USER_CANCELED: u8 = 90;
const WARNING: u8 = 1;
const FATAL: u8 = 2;

/// Limits on records a peer may send that carry no data, so that a peer streaming them
/// fails within one read instead of keeping a shard busy: rustls's and BoringSSL's.
/// Empty records in a row (empty application data, or padding only).
const MAX_EMPTY_RECORDS: u8 = 32;
/// KeyUpdates with no application data between them.
const MAX_KEY_UPDATES: u8 = 32;
/// Warning alerts over a connection's life (TLS 1.3 allows only user_canceled).
const MAX_WARNING_ALERTS: u8 = 4;

/// One direction's key, IV and record sequence number.
pub(crate) struct Keys {
    key: LessSafeKey,
    iv: [u8; 12],
    seq: u64,
}

impl Keys {
    pub(crate) fn new((seq, secrets): (u64, ConnectionTrafficSecrets)) -> Result<Keys, Error> {
        let (alg, key, iv) = match &secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (&aead::AES_128_GCM, key, iv),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (&aead::AES_256_GCM, key, iv),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => (&aead::CHACHA20_POLY1305, key, iv),
            _ => return Err(Error::General("a cipher suite the engine's record layer does not have".into())),
        };
        let key = UnboundKey::new(alg, key.as_ref()).map_err(|_| Error::General("a bad traffic key".into()))?;
        let iv = iv.as_ref().try_into().map_err(|_| Error::General("a bad traffic IV".into()))?;
        Ok(Keys { key: LessSafeKey::new(key), iv, seq })
    }

    /// The next record's nonce: the IV with the sequence number XORed into its end (§5.3).
    fn next_nonce(&mut self) -> Result<Nonce, Error> {
        let mut nonce = self.iv;
        for (n, s) in nonce[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *n ^= s;
        }
        self.seq = self.seq.checked_add(1).ok_or(Error::EncryptError)?;
        Ok(Nonce::assume_unique_for_key(nonce))
    }

    /// Seals one record of content type `inner` around `plain`, followed by `padding` zeros,
    /// onto `out` (§5.2).
    pub(crate) fn seal(&mut self, inner: u8, plain: &[u8], padding: usize, out: &mut Vec<u8>) -> Result<(), Error> {
        let len = plain.len() + 1 + padding + TAG;
        let header = [APPLICATION_DATA, 3, 3, (len >> 8) as u8, len as u8];
        let at = out.len();
        out.reserve(HEADER + len);
        out.extend_from_slice(&header);
        out.extend_from_slice(plain);
        out.push(inner);
        out.resize(out.len() + padding, 0);
        let nonce = self.next_nonce()?;
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(header), &mut out[at + HEADER..])
            .map_err(|_| Error::EncryptError)?;
        out.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Opens one record's ciphertext (`sealed`, after its `header`) in place: its inner
    /// plaintext, content type and padding included.
    pub(crate) fn open<'a>(&mut self, header: [u8; HEADER], sealed: &'a mut [u8]) -> Result<&'a mut [u8], Error> {
        let nonce = self.next_nonce()?;
        self.key.open_in_place(nonce, Aad::from(header), sealed).map_err(|_| Error::DecryptError)
    }
}

pub struct Records {
    /// What the handshake settled (rustls's record of it went with its connection).
    pub(crate) negotiated: crate::Negotiated,
    kernel: KernelConnection<ClientConnectionData>,
    tx: Keys,
    rx: Keys,
    /// Records one key may seal (the suite's confidentiality limit); then it is updated.
    pub(crate) limit: u64,
    /// A post-handshake message whose records have not all arrived.
    partial: Vec<u8>,
    /// Counted against the `MAX_*` limits above.
    empty_records: u8,
    key_updates: u8,
    warning_alerts: u8,
    /// A fatal alert went to the peer: nothing more is sealed or opened.
    failed: bool,
}

impl Records {
    pub(crate) fn new(
        negotiated: crate::Negotiated,
        secrets: rustls::ExtractedSecrets,
        kernel: KernelConnection<ClientConnectionData>,
    ) -> Result<Records, Error> {
        let limit = kernel.negotiated_cipher_suite().tls13().map_or(0, |s| s.common.confidentiality_limit);
        if limit == 0 {
            return Err(Error::General("the engine's record layer is TLS 1.3 only".into()));
        }
        // Below the limit, with room for the key update itself.
        let limit = limit.saturating_sub(16).min(1 << 24);
        Ok(Records {
            negotiated,
            kernel,
            tx: Keys::new(secrets.tx)?,
            rx: Keys::new(secrets.rx)?,
            limit,
            partial: Vec::new(),
            empty_records: 0,
            key_updates: 0,
            warning_alerts: 0,
            failed: false,
        })
    }

    #[cfg(test)]
    pub(crate) fn sealed_with_this_key(&self) -> u64 {
        self.tx.seq
    }

    /// Seals `data` into records appended to `out`.
    pub(crate) fn seal(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        if self.failed {
            return Err(Error::General("the session failed earlier".into()));
        }
        for chunk in data.chunks(MAX_PLAIN) {
            if self.tx.seq >= self.limit {
                self.update_tx(false, out)?;
            }
            self.seal_record(APPLICATION_DATA, chunk, out)?;
        }
        Ok(())
    }

    fn seal_record(&mut self, inner: u8, plain: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        self.tx.seal(inner, plain, 0, out)
    }

    /// Tells the peer the next records use a new key, asking it to update its own too if
    /// `request`, then uses it (§4.6.3).
    pub(crate) fn update_tx(&mut self, request: bool, out: &mut Vec<u8>) -> Result<(), Error> {
        self.seal_record(HANDSHAKE, &[KEY_UPDATE, 0, 0, 1, u8::from(request)], out)?;
        self.tx = Keys::new(self.kernel.update_tx_secret()?)?;
        Ok(())
    }

    /// Opens the whole records at the start of `data` in place, handing each one's plaintext
    /// to `deliver`; replies owed to the peer (a key update it asked for, and on a failure
    /// the fatal alert RFC 8446 §6.2 requires) go into `out`. Returns the bytes used: an
    /// incomplete record's are left for its rest. After the peer's close_notify (`closed`),
    /// whatever follows is ignored.
    pub(crate) fn open(
        &mut self,
        data: &mut [u8],
        out: &mut Vec<u8>,
        closed: &mut bool,
        deliver: impl FnMut(&[u8]),
    ) -> Result<usize, Error> {
        if self.failed {
            return Err(Error::General("the session failed earlier".into()));
        }
        let opened = self.open_records(data, out, closed, deliver);
        if let Err(e) = &opened {
            self.failed = true;
            if let Some(alert) = alert_for(e) {
                // Best effort: the connection ends whether or not the peer reads it.
                let _ = self.seal_record(ALERT, &[FATAL, u8::from(alert)], out);
            }
        }
        opened
    }

    fn open_records(
        &mut self,
        data: &mut [u8],
        out: &mut Vec<u8>,
        closed: &mut bool,
        mut deliver: impl FnMut(&[u8]),
    ) -> Result<usize, Error> {
        let mut off = 0;
        while !*closed {
            let rest = &mut data[off..];
            if rest.len() < HEADER {
                return Ok(off);
            }
            let header: [u8; HEADER] = rest[..HEADER].try_into().expect("HEADER bytes");
            let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
            match header[0] {
                APPLICATION_DATA => {}
                CHANGE_CIPHER_SPEC => return Err(PeerMisbehaved::IllegalMiddleboxChangeCipherSpec.into()),
                _ => return Err(InvalidMessage::InvalidContentType.into()),
            }
            if len > MAX_CIPHER {
                return Err(Error::PeerSentOversizedRecord);
            }
            if rest.len() < HEADER + len {
                return Ok(off);
            }
            if len < TAG + 1 {
                return Err(InvalidMessage::MessageTooShort.into());
            }
            let plain = self.rx.open(header, &mut rest[HEADER..HEADER + len])?;
            off += HEADER + len;
            // The content type is the last byte that is not padding.
            let end = plain.iter().rposition(|&b| b != 0).ok_or(InvalidMessage::InvalidContentType)?;
            let (body, inner) = (&plain[..end], plain[end]);
            // §5.4: the content is at most 2^14 bytes, whatever the record's length allows.
            if body.len() > MAX_PLAIN {
                return Err(Error::PeerSentOversizedRecord);
            }
            // §5.1: a handshake message split over records has nothing between its parts.
            if !self.partial.is_empty() && inner != HANDSHAKE {
                return Err(PeerMisbehaved::MessageInterleavedWithHandshakeMessage.into());
            }
            if body.is_empty() {
                self.empty_records += 1;
                if self.empty_records > MAX_EMPTY_RECORDS {
                    return Err(PeerMisbehaved::TooManyEmptyFragments.into());
                }
            } else {
                self.empty_records = 0;
            }
            match inner {
                APPLICATION_DATA => {
                    if !body.is_empty() {
                        self.key_updates = 0;
                        deliver(body);
                    }
                }
                ALERT => match body {
                    [_, CLOSE_NOTIFY] => *closed = true,
                    [WARNING, USER_CANCELED] => {
                        self.warning_alerts += 1;
                        if self.warning_alerts > MAX_WARNING_ALERTS {
                            return Err(PeerMisbehaved::TooManyWarningAlertsReceived.into());
                        }
                    }
                    [_, description] => return Err(Error::AlertReceived(AlertDescription::from(*description))),
                    _ => return Err(InvalidMessage::MessageTooShort.into()),
                },
                // §5.1: zero-length fragments of handshake messages are not sent.
                HANDSHAKE if body.is_empty() => return Err(InvalidMessage::InvalidEmptyPayload.into()),
                HANDSHAKE => self.handshake(body, out)?,
                _ => return Err(InvalidMessage::InvalidContentType.into()),
            }
        }
        Ok(data.len())
    }

    /// Post-handshake messages: tickets go to rustls's session cache; a key update changes
    /// the key the peer's records use, and ours if it asks.
    fn handshake(&mut self, body: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        let joined;
        let mut msgs = if self.partial.is_empty() {
            body
        } else {
            self.partial.extend_from_slice(body);
            joined = std::mem::take(&mut self.partial);
            &joined[..]
        };
        while !msgs.is_empty() {
            // A message is its type, a 3-byte length, then the payload.
            let len = msgs.get(1..4).map(|l| u32::from_be_bytes([0, l[0], l[1], l[2]]) as usize);
            if len.is_some_and(|len| len > MAX_MESSAGE) {
                return Err(InvalidMessage::HandshakePayloadTooLarge.into());
            }
            let Some(len) = len.filter(|len| msgs.len() >= 4 + len) else {
                self.partial = msgs.to_vec();
                return Ok(());
            };
            let (payload, rest) = msgs[4..].split_at(len);
            match msgs[0] {
                NEW_SESSION_TICKET => self.kernel.handle_new_session_ticket(payload)?,
                KEY_UPDATE => {
                    // The peer's next record uses the new key, so nothing may follow in this one.
                    if !rest.is_empty() {
                        return Err(PeerMisbehaved::KeyEpochWithPendingFragment.into());
                    }
                    self.key_updates += 1;
                    if self.key_updates > MAX_KEY_UPDATES {
                        return Err(PeerMisbehaved::TooManyKeyUpdateRequests.into());
                    }
                    let requested = match payload {
                        [0] => false,
                        [1] => true,
                        _ => return Err(InvalidMessage::InvalidKeyUpdate.into()),
                    };
                    self.rx = Keys::new(self.kernel.update_rx_secret()?)?;
                    if requested {
                        self.update_tx(false, out)?;
                    }
                }
                _ => return Err(InvalidMessage::UnexpectedMessage("a handshake message after the handshake").into()),
            }
            msgs = rest;
        }
        Ok(())
    }
}

/// The fatal alert a failure owes the peer (RFC 8446 §6.2); none after the peer's own alert.
fn alert_for(e: &Error) -> Option<AlertDescription> {
    Some(match e {
        Error::AlertReceived(_) => return None,
        Error::DecryptError => AlertDescription::BadRecordMac,
        Error::PeerSentOversizedRecord => AlertDescription::RecordOverflow,
        Error::InvalidMessage(InvalidMessage::InvalidContentType) => AlertDescription::UnexpectedMessage,
        Error::InvalidMessage(InvalidMessage::InvalidKeyUpdate) => AlertDescription::IllegalParameter,
        Error::InvalidMessage(_) => AlertDescription::DecodeError,
        Error::PeerMisbehaved(_) => AlertDescription::UnexpectedMessage,
        _ => AlertDescription::InternalError,
    })
}
