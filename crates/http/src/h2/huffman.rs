//! HPACK's Huffman code (RFC 7541 §5.2, Appendix B), decoding only: the client never
//! Huffman-encodes (its requests are rendered once, literally), and decodes only the strings
//! something reads (a status, `grpc-status`, `retry-after`, a captured header).
//!
//! The code is canonical (codes of one length are consecutive, in symbol order, after the
//! shorter ones), so the code lengths alone rebuild it: a bit at a time, a code of length `n`
//! is a symbol when it falls in that length's range. Strings decoded here are short.

use std::sync::OnceLock;

use thiserror::Error;

/// Code lengths of bytes 0..=255 (RFC 7541 Appendix B); EOS, symbol 256, is 30 bits.
const LENGTHS: [u8; 256] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28,
    28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12,
    10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6,
    5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22,
    22, 23, 22, 23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22, 21, 20,
    22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28,
    27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28,
    27, 27, 27, 27, 27, 26,
];
const EOS: u16 = 256;
const LONGEST: usize = 30;

/// A Huffman string that does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum HuffmanError {
    #[error("a Huffman string holds the EOS symbol")]
    Eos,
    #[error("a Huffman string's padding is not the EOS prefix or is longer than 7 bits")]
    Padding,
}

/// The canonical code by length: the first code of each length, how many there are, and
/// where their symbols start in `symbols` (sorted by length, then symbol).
struct Table {
    first: [u32; LONGEST + 1],
    count: [u16; LONGEST + 1],
    offset: [u16; LONGEST + 1],
    symbols: [u16; 257],
}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let len = |s: u16| if s == EOS { LONGEST as u8 } else { LENGTHS[s as usize] };
        let mut symbols: [u16; 257] = std::array::from_fn(|i| i as u16);
        symbols.sort_by_key(|&s| (len(s), s));
        let mut t = Table { first: [0; LONGEST + 1], count: [0; LONGEST + 1], offset: [0; LONGEST + 1], symbols };
        let (mut code, mut prev) = (0u32, len(symbols[0]));
        for (i, &s) in symbols.iter().enumerate() {
            let n = len(s);
            code <<= n - prev;
            prev = n;
            if t.count[n as usize] == 0 {
                t.first[n as usize] = code;
                t.offset[n as usize] = i as u16;
            }
            t.count[n as usize] += 1;
            code += 1;
        }
        t
    })
}

/// Appends the decoding of `src` to `out`.
pub fn decode(src: &[u8], out: &mut Vec<u8>) -> Result<(), HuffmanError> {
    let t = table();
    let (mut code, mut len) = (0u32, 0usize);
    for &byte in src {
        for bit in (0..8).rev() {
            code = (code << 1) | u32::from((byte >> bit) & 1);
            len += 1;
            let at = code.wrapping_sub(t.first[len]);
            if at < u32::from(t.count[len]) {
                let s = t.symbols[usize::from(t.offset[len]) + at as usize];
                if s == EOS {
                    return Err(HuffmanError::Eos);
                }
                out.push(s as u8);
                code = 0;
                len = 0;
            } else if len == LONGEST {
                // Every 30-bit pattern is a code or EOS's prefix; unreachable for valid tables.
                return Err(HuffmanError::Padding);
            }
        }
    }
    // What is left must be a prefix of EOS (all ones), shorter than a byte.
    if len > 7 || code != (1u32 << len) - 1 {
        return Err(HuffmanError::Padding);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    fn decoded(s: &str) -> Result<Vec<u8>, HuffmanError> {
        let mut out = Vec::new();
        decode(&hex(s), &mut out).map(|()| out)
    }

    #[test]
    fn the_rfc_examples_decode() {
        // RFC 7541 C.4.1–C.4.3 and C.6.1.
        assert_eq!(decoded("f1e3 c2e5 f23a 6ba0 ab90 f4ff").unwrap(), b"www.example.com");
        assert_eq!(decoded("a8eb 1064 9cbf").unwrap(), b"no-cache");
        assert_eq!(decoded("25a8 49e9 5ba9 7d7f").unwrap(), b"custom-key");
        assert_eq!(decoded("25a8 49e9 5bb8 e8b4 bf").unwrap(), b"custom-value");
        assert_eq!(decoded("6402").unwrap(), b"302");
        assert_eq!(decoded("aec3 771a 4b").unwrap(), b"private");
        assert_eq!(
            decoded("d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff").unwrap(),
            b"Mon, 21 Oct 2013 20:13:21 GMT"
        );
        assert_eq!(decoded("").unwrap(), b"");
    }

    #[test]
    fn bad_padding_and_eos_are_refused() {
        // '0' is 00000 and a full byte of padding (8 ones) is too long.
        assert_eq!(decoded("07 ff"), Err(HuffmanError::Padding));
        // Padding of zeros is not EOS's prefix.
        assert_eq!(decoded("00"), Err(HuffmanError::Padding));
        // EOS itself (30 ones) in the string.
        assert_eq!(decoded("ff ff ff fc"), Err(HuffmanError::Eos));
    }

    #[test]
    fn every_byte_sequence_decodes_or_fails_cleanly() {
        let mut out = Vec::new();
        for a in 0..=255u8 {
            for b in [0u8, 0x7f, 0xff, a] {
                out.clear();
                let _ = decode(&[a, b, !a], &mut out);
                assert!(out.len() <= 5);
            }
        }
    }
}
