//! HPACK decoding with a dynamic table (RFC 7541 §2.3.2, §4, §6), as a server needs it:
//! clients index the fields they repeat (curl, nghttp2, browsers and gRPC libraries all do),
//! and a client may use the default 4,096-byte table before it has read the server's
//! SETTINGS, so a server cannot refuse one the way the blast's client does.
//!
//! Strings come out decoded (Huffman or not) as byte slices; what they may contain is the
//! caller's to judge (RFC 9113 §8.2.1).

use std::collections::VecDeque;

use super::hpack::{integer, string, HpackError, Text, STATIC};

/// A table entry: a name and a value, decoded.
type Entry = (Box<[u8]>, Box<[u8]>);

/// One connection's decoding state: the table the client's encoder fills.
#[derive(Debug)]
pub struct Decoder {
    /// Newest first: index 62 is the front.
    entries: VecDeque<Entry>,
    size: usize,
    /// The table's size now (the encoder's last size update, at most `limit`).
    max: usize,
    /// `SETTINGS_HEADER_TABLE_SIZE` as advertised.
    limit: usize,
}

/// Where decoded strings are kept while a field is handed over (reused between fields).
#[derive(Debug, Default)]
pub struct Scratch {
    name: Vec<u8>,
    value: Vec<u8>,
}

/// An entry's size in the table (RFC 7541 §4.1).
fn entry_size(name: &[u8], value: &[u8]) -> usize {
    name.len() + value.len() + 32
}

impl Decoder {
    /// A decoder for a table of at most `limit` bytes (what the server advertises; 4,096
    /// is the protocol's default).
    pub fn new(limit: usize) -> Self {
        Decoder { entries: VecDeque::new(), size: 0, max: limit, limit }
    }

    /// Bytes the table holds now.
    pub fn size(&self) -> usize {
        self.size
    }

    fn evict_to(&mut self, max: usize) {
        while self.size > max {
            let Some((n, v)) = self.entries.pop_back() else { break };
            self.size -= entry_size(&n, &v);
        }
    }

    fn insert(&mut self, name: Box<[u8]>, value: Box<[u8]>) {
        let size = entry_size(&name, &value);
        // An entry larger than the table empties it and is not kept (§4.4).
        self.evict_to(self.max.saturating_sub(size));
        if size <= self.max {
            self.size += size;
            self.entries.push_front((name, value));
        }
    }

    /// The entry at HPACK index `i` (1-based, static table first).
    fn entry(&self, i: usize) -> Result<(&[u8], &[u8]), HpackError> {
        match i {
            1..=61 => Ok((STATIC[i - 1].0.as_bytes(), STATIC[i - 1].1.as_bytes())),
            _ => self.entries.get(i.wrapping_sub(62)).map(|(n, v)| (&n[..], &v[..])).ok_or(HpackError::Index(i)),
        }
    }

    /// Decodes `block` field by field into `each(name, value)`, which may stop it with its
    /// own error. The table is updated as the block says even when `each` has stopped
    /// caring: an error from `each` is returned only after the whole block is decoded, so
    /// the connection's table stays in step with the client's.
    pub fn decode<E: From<HpackError>>(
        &mut self,
        block: &[u8],
        scratch: &mut Scratch,
        mut each: impl FnMut(&[u8], &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut at = 0;
        let mut first = None;
        let mut fields = 0usize;
        while at < block.len() {
            let b = block[at];
            if b & 0x80 != 0 {
                let (n, v) = self.entry(integer(block, &mut at, 7)?)?;
                if first.is_none() {
                    first = each(n, v).err();
                }
                fields += 1;
                continue;
            }
            if b & 0xe0 == 0x20 {
                // A size update: only before the block's first field (§4.2).
                let size = integer(block, &mut at, 5)?;
                if fields > 0 {
                    return Err(HpackError::LateSizeUpdate.into());
                }
                if size > self.limit {
                    return Err(HpackError::TableSize(size).into());
                }
                self.max = size;
                self.evict_to(size);
                continue;
            }
            let indexing = b & 0xc0 == 0x40;
            let prefix = if indexing { 6 } else { 4 };
            let index = integer(block, &mut at, prefix)?;
            let name_text = if index == 0 { Some(string(block, &mut at)?) } else { None };
            let value_text = string(block, &mut at)?;
            let Scratch { name: name_buf, value: value_buf } = scratch;
            let name: &[u8] = match name_text {
                Some(t) => text(t, name_buf)?,
                None => {
                    let (n, _) = self.entry(index)?;
                    name_buf.clear();
                    name_buf.extend_from_slice(n);
                    name_buf
                }
            };
            let value = text(value_text, value_buf)?;
            if first.is_none() {
                first = each(name, value).err();
            }
            fields += 1;
            if indexing {
                self.insert(name.into(), value.into());
            }
        }
        first.map_or(Ok(()), Err)
    }
}

/// A string's bytes: borrowed from the block when raw, else Huffman-decoded into `buf`.
fn text<'a>(t: Text<'a>, buf: &'a mut Vec<u8>) -> Result<&'a [u8], HpackError> {
    match t {
        Text::Raw(b) => Ok(b),
        Text::Huffman(b) => {
            buf.clear();
            super::huffman::decode(b, buf)?;
            Ok(buf.as_slice())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    fn fields(d: &mut Decoder, block: &[u8]) -> Result<Vec<(String, String)>, HpackError> {
        let mut out = Vec::new();
        d.decode::<HpackError>(block, &mut Scratch::default(), |n, v| {
            out.push((String::from_utf8_lossy(n).into_owned(), String::from_utf8_lossy(v).into_owned()));
            Ok(())
        })?;
        Ok(out)
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn the_rfc_requests_with_huffman_decode_in_sequence() {
        // RFC 7541 C.4: three requests on one connection, each indexing into the table.
        let mut d = Decoder::new(4096);
        let first = fields(&mut d, &hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff")).unwrap();
        assert_eq!(
            first,
            pairs(&[(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "www.example.com")])
        );
        assert_eq!(d.size(), 57);
        let second = fields(&mut d, &hex("8286 84be 5886 a8eb 1064 9cbf")).unwrap();
        assert_eq!(second[3], (":authority".into(), "www.example.com".into()));
        assert_eq!(second[4], ("cache-control".into(), "no-cache".into()));
        assert_eq!(d.size(), 110);
        let third = fields(&mut d, &hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf")).unwrap();
        assert_eq!(third[2], (":path".into(), "/index.html".into()));
        assert_eq!(third[3], (":authority".into(), "www.example.com".into()));
        assert_eq!(third[4], ("custom-key".into(), "custom-value".into()));
        assert_eq!(d.size(), 164);
    }

    #[test]
    fn the_table_evicts_the_oldest_and_honours_size_updates() {
        let mut d = Decoder::new(100);
        // Literal with indexing, new name "aa" value "b" (35 bytes), twice, then a third.
        let entry = |n: &str| {
            let mut b = vec![0x40, n.len() as u8];
            b.extend_from_slice(n.as_bytes());
            b.extend_from_slice(&[1, b'v']);
            b
        };
        for n in ["aa", "bb", "cc"] {
            fields(&mut d, &entry(n)).unwrap();
        }
        // 3 × 35 > 100: "aa" went; 62 is the newest.
        assert_eq!(fields(&mut d, &[0x80 | 62]).unwrap(), pairs(&[("cc", "v")]));
        assert_eq!(fields(&mut d, &[0x80 | 63]).unwrap(), pairs(&[("bb", "v")]));
        assert_eq!(fields(&mut d, &[0x80 | 64]), Err(HpackError::Index(64)));
        // A size update to 40 keeps only the newest; over the limit is refused.
        assert_eq!(fields(&mut d, &[0x20 | 31, 9, 0x80 | 62]).unwrap(), pairs(&[("cc", "v")]));
        assert_eq!(d.size(), 35);
        assert_eq!(fields(&mut d, &[0x3f, 0x46]), Err(HpackError::TableSize(101)));
        // Only before the first field.
        assert_eq!(fields(&mut d, &[0x82, 0x20]), Err(HpackError::LateSizeUpdate));
    }

    #[test]
    fn an_error_from_the_reader_still_decodes_the_whole_block() {
        let mut d = Decoder::new(4096);
        let mut block = vec![0x82];
        block.extend_from_slice(&[0x40, 1, b'x', 1, b'y']);
        let r = d.decode::<HpackError>(&block, &mut Scratch::default(), |_, _| Err(HpackError::Truncated));
        assert_eq!(r, Err(HpackError::Truncated));
        assert_eq!(fields(&mut d, &[0x80 | 62]).unwrap(), pairs(&[("x", "y")]));
    }
}
