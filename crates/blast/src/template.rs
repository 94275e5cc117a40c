//! Templated requests: `{{seq}}`, `{{uuid}}`, `{{rand_int:MIN:MAX}}`, `{{rand_str:LEN}}` in the
//! path, header values and body, rendered per request into a buffer the connection reuses,
//! so the hot path allocates nothing once the buffer has grown to size. The data file
//! (`{{csv.COLUMN}}`) is read here too.

use engine_http::push_u64;
pub use engine_util::Rng;

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(Vec<u8>),
    /// A number unique in the run: the shard's count, interleaved over shards.
    Seq,
    Uuid,
    RandInt(u64, u64),
    RandStr(usize),
    /// A value captured by an earlier step of a flow: its index once resolved.
    Cap(usize),
    CapName(String),
    /// A column of the data file's current row: its index once resolved.
    Data(usize),
    DataName(String),
}

/// A parsed template. Text without `{{` is one literal part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// Longest `rand_str`, so a typo cannot make every request megabytes long.
pub const MAX_RAND_STR: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template '{{{{{0}}}}}' references nothing: use seq, uuid, rand_int:MIN:MAX, rand_str:LEN or cap.NAME (a value an earlier flow step captured)")]
pub struct TemplateError(pub String);

impl Template {
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Lit(rest.as_bytes()[..open].to_vec()));
            }
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or_else(|| TemplateError(after.chars().take(20).collect()))?;
            let name = after[..close].trim();
            parts.push(parse_part(name).ok_or_else(|| TemplateError(name.to_string()))?);
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.as_bytes().to_vec()));
        }
        Ok(Template { parts })
    }

    /// Bytes sent as they are.
    pub fn literal(bytes: &[u8]) -> Template {
        Template { parts: if bytes.is_empty() { Vec::new() } else { vec![Part::Lit(bytes.to_vec())] } }
    }

    /// True when rendering gives the same bytes every time.
    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Lit(_)))
    }

    /// Turns `{{cap.NAME}}` into the index of NAME in `vars`; an unknown name is an error.
    pub fn resolve_captures(&mut self, vars: &[String]) -> Result<(), TemplateError> {
        for p in &mut self.parts {
            if let Part::CapName(name) = p {
                let i = vars.iter().position(|v| v == name).ok_or_else(|| TemplateError(format!("cap.{name}")))?;
                *p = Part::Cap(i);
            }
        }
        Ok(())
    }

    /// Turns `{{csv.COLUMN}}` into the column's index in `columns`; an unknown column is an error.
    pub fn resolve_columns(&mut self, columns: &[String]) -> Result<(), TemplateError> {
        for p in &mut self.parts {
            if let Part::DataName(name) = p {
                let i = columns.iter().position(|c| c == name).ok_or_else(|| TemplateError(format!("csv.{name}")))?;
                *p = Part::Data(i);
            }
        }
        Ok(())
    }

    /// Whether the template uses a captured value.
    pub fn captures(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Cap(_) | Part::CapName(_)))
    }

    /// Appends one rendering to `out`; `caps` holds the connection's captured values.
    pub fn render(&self, out: &mut Vec<u8>, v: &mut Values, caps: &[Vec<u8>]) {
        for p in &self.parts {
            match p {
                Part::Lit(b) => out.extend_from_slice(b),
                Part::Cap(i) => out.extend_from_slice(caps.get(*i).map(Vec::as_slice).unwrap_or_default()),
                Part::Data(i) => {
                    if let Some(row) = v.data.as_ref().and_then(|d| d.rows.get(v.row)) {
                        out.extend_from_slice(row.get(*i).map(Vec::as_slice).unwrap_or_default());
                    }
                }
                // Unresolved names are refused at plan time; render nothing if one slips by.
                Part::CapName(_) | Part::DataName(_) => {}
                Part::Seq => push_u64(out, v.seq),
                Part::Uuid => {
                    let (a, b) = (v.rng.next(), v.rng.next());
                    // Version 4, variant 10.
                    let a = (a & !0xf000) | 0x4000;
                    let b = (b & !(0b11 << 62)) | (0b10 << 62);
                    let mut hex = [0u8; 32];
                    for (i, byte) in a.to_be_bytes().iter().chain(b.to_be_bytes().iter()).enumerate() {
                        hex[2 * i] = HEX[(byte >> 4) as usize];
                        hex[2 * i + 1] = HEX[(byte & 15) as usize];
                    }
                    for (range, dash) in [(0..8, true), (8..12, true), (12..16, true), (16..20, true), (20..32, false)]
                    {
                        out.extend_from_slice(&hex[range]);
                        if dash {
                            out.push(b'-');
                        }
                    }
                }
                Part::RandInt(lo, hi) => push_u64(out, lo + v.rng.next() % (hi - lo + 1)),
                Part::RandStr(n) => {
                    for _ in 0..*n {
                        out.push(ALNUM[(v.rng.next() % ALNUM.len() as u64) as usize]);
                    }
                }
            }
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";
const ALNUM: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

fn parse_part(name: &str) -> Option<Part> {
    let mut it = name.split(':');
    let part = match (it.next()?, it.next(), it.next(), it.next()) {
        ("seq", None, None, None) => Part::Seq,
        ("uuid", None, None, None) => Part::Uuid,
        ("rand_int", Some(a), Some(b), None) => {
            let (a, b) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
            if a > b || b == u64::MAX {
                return None;
            }
            Part::RandInt(a, b)
        }
        (cap, None, None, None) if cap.starts_with("cap.") && cap.len() > 4 => Part::CapName(cap[4..].to_string()),
        (col, None, None, None) if col.starts_with("csv.") && col.len() > 4 => Part::DataName(col[4..].to_string()),
        ("rand_str", Some(n), None, None) => {
            let n: usize = n.trim().parse().ok()?;
            if n == 0 || n > MAX_RAND_STR {
                return None;
            }
            Part::RandStr(n)
        }
        _ => return None,
    };
    Some(part)
}

/// The per-request values a shard feeds its templates.
#[derive(Debug, Clone)]
pub struct Values {
    pub seq: u64,
    pub rng: Rng,
    /// The data file, and the row this request uses.
    pub data: Option<std::sync::Arc<DataTable>>,
    pub row: usize,
}

/// The largest data file: its rows are held in memory, each value in its own buffer.
pub const MAX_DATA_FILE: u64 = 256 * 1024 * 1024;

/// A CSV data file: a header line naming the columns, then rows of values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataTable {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Vec<u8>>>,
    /// Rows taken at random rather than in turn.
    pub random: bool,
}

impl DataTable {
    /// Reads a CSV file (RFC 4180 quoting) with a header line, of at most [`MAX_DATA_FILE`] bytes.
    pub fn read(path: &std::path::Path, random: bool) -> Result<Self, String> {
        use std::io::Read as _;
        let file = std::fs::File::open(path).map_err(|e| format!("cannot read data file '{}': {e}", path.display()))?;
        // One byte past the limit: a reader that got it has met a file over the limit (which
        // may also show as a CSV error on the cut-off last row, so that is checked first).
        let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(file.take(MAX_DATA_FILE + 1));
        let too_large = || format!("data file '{}': larger than the {MAX_DATA_FILE}-byte limit", path.display());
        let headers = reader.headers().cloned();
        if reader.get_ref().limit() == 0 {
            return Err(too_large());
        }
        let columns: Vec<String> = headers
            .map_err(|e| format!("data file '{}': {e}", path.display()))?
            .iter()
            .map(|c| c.trim().to_string())
            .collect();
        let mut rows = Vec::new();
        let mut record = csv::ByteRecord::new();
        loop {
            let read = reader.read_byte_record(&mut record);
            if reader.get_ref().limit() == 0 {
                return Err(too_large());
            }
            match read {
                Ok(true) => rows.push(record.iter().map(<[u8]>::to_vec).collect()),
                Ok(false) => break,
                Err(e) => return Err(format!("data file '{}', row {}: {e}", path.display(), rows.len() + 2)),
            }
        }
        if rows.is_empty() {
            return Err(format!("data file '{}' has no rows after its header", path.display()));
        }
        Ok(Self { columns, rows, random })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(t: &str, seq: u64) -> String {
        let mut out = Vec::new();
        Template::parse(t).unwrap().render(&mut out, &mut Values { seq, rng: Rng::new(42), data: None, row: 0 }, &[]);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn renders() {
        assert_eq!(render("/users/{{seq}}?x=1", 1234), "/users/1234?x=1");
        assert_eq!(render("{{ seq }}", 0), "0");
        let n: u64 = render("{{rand_int:5:7}}", 0).parse().unwrap();
        assert!((5..=7).contains(&n));
        assert_eq!(render("{{rand_str:12}}", 0).len(), 12);
        let u = render("{{uuid}}", 0);
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(Template::parse("plain").unwrap().is_literal());
        assert!(!Template::parse("{{seq}}").unwrap().is_literal());
    }

    #[test]
    fn captured_values() {
        let mut t = Template::parse("Bearer {{cap.token}}").unwrap();
        assert!(t.captures());
        assert!(t.clone().resolve_captures(&["other".into()]).is_err());
        t.resolve_captures(&["x".into(), "token".into()]).unwrap();
        let mut out = Vec::new();
        t.render(
            &mut out,
            &mut Values { seq: 0, rng: Rng::new(1), data: None, row: 0 },
            &[b"no".to_vec(), b"abc".to_vec()],
        );
        assert_eq!(out, b"Bearer abc");
    }

    #[test]
    fn references_to_nothing_are_errors() {
        for bad in ["{{nope}}", "{{seq", "{{rand_int:9:1}}", "{{rand_str:0}}", "{{rand_str:99999}}", "{{uuid:1}}"] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rendering_reuses_the_buffer() {
        let t = Template::parse("/a/{{seq}}/{{uuid}}").unwrap();
        let mut out = Vec::with_capacity(64);
        let mut v = Values { seq: 0, rng: Rng::new(1), data: None, row: 0 };
        let cap = out.capacity();
        for i in 0..1000 {
            out.clear();
            v.seq = i;
            t.render(&mut out, &mut v, &[]);
        }
        assert_eq!(out.capacity(), cap);
    }
}
