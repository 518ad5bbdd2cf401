//! What the host accepts as the agent's answer.
//!
//! The guest is hostile: a taken-over agent can answer anything. So every
//! request bounds the frame it may get back ([`Request::reply_limit`],
//! derived from what was asked: `max_bytes` of a read, `max_output_bytes`
//! of an exec), the frame is refused from its length alone when it claims
//! more, and what arrives is clipped to what was asked
//! ([`Response::clip_to`]). Listings and manifests, the only answers made
//! of many small records, are parsed as they stream in, with a cap on the
//! number of entries, into a plain struct: serde buffers an internally
//! tagged enum's fields as a generic tree first, several times the size of
//! the final entries.

use crate::{
    read_frame_limited, read_frame_with, ErrorKind, FileEntry, Request, Response, MAX_FRAME_BYTES,
};
use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use std::io::{self, Read};

/// Cap on an answer that carries no bulk content (pong, ok, error,
/// applied, extracted, the start and end of an archive stream): a few
/// hundred bytes honestly; 64 KiB leaves room for long error messages
/// that name paths.
pub const SMALL_REPLY_MAX_BYTES: usize = 64 * 1024;

/// Cap on a listing or manifest answer. The agent lists at most
/// [`MAX_LISTING_ENTRIES`] entries, about 150 bytes each in JSON for a
/// typical path with its hash, so 32 MiB fits the biggest honest tree;
/// parsed, it stays within about twice that.
pub const LISTING_REPLY_MAX_BYTES: usize = 32 * 1024 * 1024;

/// Most entries one listing or manifest may hold: the agent's own walk
/// stops at this many (the guest crate's `files::MAX_ENTRIES` is this).
pub const MAX_LISTING_ENTRIES: usize = 200_000;

/// Bytes of JSON text a string of `n` bytes may take: control characters
/// are escaped as `\u00XX`, six bytes for one.
fn json_text_max(n: usize) -> usize {
    n.saturating_mul(6)
}

/// Length of [`crate::base64_encode`]'s output for `n` bytes.
pub fn base64_len(n: u64) -> u64 {
    n.div_ceil(3).saturating_mul(4)
}

impl Request {
    /// The largest answer frame this request may get, in bytes.
    pub fn reply_limit(&self) -> usize {
        let limit = match self {
            // Both streams, escaped, plus the fixed fields.
            Request::Exec(e) => json_text_max(e.max_output_bytes)
                .saturating_mul(2)
                .saturating_add(SMALL_REPLY_MAX_BYTES),
            Request::ReadFile { max_bytes, .. } => usize::try_from(base64_len(*max_bytes))
                .unwrap_or(usize::MAX)
                .saturating_add(SMALL_REPLY_MAX_BYTES),
            Request::ListFiles { .. } | Request::Manifest { .. } => LISTING_REPLY_MAX_BYTES,
            Request::Ping
            | Request::Shutdown
            | Request::Apply(_)
            | Request::PushArchive { .. }
            | Request::PullArchive { .. }
            | Request::Discard => SMALL_REPLY_MAX_BYTES,
        };
        limit.min(MAX_FRAME_BYTES)
    }
}

impl Response {
    /// The answer cut to what `req` asked for: an exec's output to
    /// `max_output_bytes` per stream, a read's data to `max_bytes`; each
    /// cut is marked as truncation. A hostile agent may send more than
    /// asked (within [`Request::reply_limit`]); callers never see it.
    pub fn clip_to(self, req: &Request) -> Response {
        match (self, req) {
            (Response::Exec(mut r), Request::Exec(e)) => {
                let max = e.max_output_bytes;
                if clip_text(&mut r.stdout, max) {
                    r.stdout_truncated = true;
                }
                if clip_text(&mut r.stderr, max) {
                    r.stderr_truncated = true;
                }
                r.stdout_bytes = r.stdout_bytes.max(r.stdout.len() as u64);
                r.stderr_bytes = r.stderr_bytes.max(r.stderr.len() as u64);
                Response::Exec(r)
            }
            (
                Response::FileData {
                    size_bytes,
                    mut data_b64,
                    mut truncated,
                },
                Request::ReadFile { max_bytes, .. },
            ) => {
                // A multiple of 4 characters is still valid base64; it may
                // decode to 2 bytes past `max_bytes`, which the reader cuts.
                let cap = usize::try_from(base64_len(*max_bytes)).unwrap_or(usize::MAX);
                if data_b64.len() > cap {
                    data_b64.truncate(cap);
                    truncated = true;
                }
                Response::FileData {
                    size_bytes,
                    data_b64,
                    truncated,
                }
            }
            (other, _) => other,
        }
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary; whether it cut.
fn clip_text(s: &mut String, max: usize) -> bool {
    if s.len() <= max {
        return false;
    }
    let mut at = max;
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    s.truncate(at);
    true
}

/// Reads the answer to `req` within its limit and clips it to what was
/// asked; `Ok(None)` when the agent closed the stream without answering.
pub fn read_reply<R: Read>(r: &mut R, req: &Request) -> io::Result<Option<Response>> {
    let limit = req.reply_limit();
    let resp = match req {
        Request::ListFiles { .. } | Request::Manifest { .. } => {
            read_frame_with(r, limit, |body| serde_json::from_reader::<_, Listing>(body))?
                .map(Listing::into_response)
                .transpose()?
        }
        _ => read_frame_limited(r, limit)?,
    };
    Ok(resp.map(|resp| resp.clip_to(req)))
}

/// The fields of a listing or manifest answer (or an error), as a plain
/// struct that serde parses as it streams.
#[derive(Deserialize)]
struct Listing {
    kind: String,
    #[serde(default)]
    error_kind: ErrorKind,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    entry: Option<FileEntry>,
    #[serde(default, deserialize_with = "bounded_entries")]
    entries: Vec<FileEntry>,
}

impl Listing {
    fn into_response(self) -> io::Result<Response> {
        let bad = |what: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the agent answered a listing with {what}"),
            )
        };
        match self.kind.as_str() {
            "manifest" => Ok(Response::Manifest {
                entries: self.entries,
            }),
            "files" => Ok(Response::Files {
                entry: self.entry.ok_or_else(|| bad("no entry"))?,
                entries: self.entries,
            }),
            "error" => Ok(Response::Error {
                kind: self.error_kind,
                message: self.message.unwrap_or_default(),
            }),
            other => Err(bad(&format!("a {other:?} answer"))),
        }
    }
}

/// A `Vec<FileEntry>` of at most [`MAX_LISTING_ENTRIES`], refused as soon
/// as one more arrives.
fn bounded_entries<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<FileEntry>, D::Error> {
    struct Bounded;
    impl<'de> Visitor<'de> for Bounded {
        type Value = Vec<FileEntry>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "at most {MAX_LISTING_ENTRIES} file entries")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(e) = seq.next_element::<FileEntry>()? {
                if out.len() == MAX_LISTING_ENTRIES {
                    return Err(serde::de::Error::custom(format!(
                        "more than {MAX_LISTING_ENTRIES} entries in one listing"
                    )));
                }
                out.push(e);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(Bounded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{write_frame, ArtifactType, ExecRequest, ExecResult};

    fn frame<T: serde::Serialize>(v: &T) -> Vec<u8> {
        let mut buf = Vec::new();
        write_frame(&mut buf, v).unwrap();
        buf
    }

    fn entry(path: &str) -> FileEntry {
        FileEntry {
            path: path.into(),
            artifact_type: ArtifactType::File,
            size_bytes: 1,
            link_target: None,
            mode: 0o644,
            sha256: None,
        }
    }

    #[test]
    fn exec_output_over_what_was_asked_is_clipped_and_marked() {
        let req = Request::Exec(ExecRequest {
            max_output_bytes: 10,
            ..Default::default()
        });
        let sent = Response::Exec(ExecResult {
            stdout: "é".repeat(40),
            stderr: "short".into(),
            stdout_bytes: 3,
            ..Default::default()
        });
        let got = read_reply(&mut frame(&sent).as_slice(), &req)
            .unwrap()
            .unwrap();
        let Response::Exec(r) = got else {
            panic!("{got:?}")
        };
        assert_eq!(r.stdout, "é".repeat(5));
        assert!(r.stdout_truncated && !r.stderr_truncated);
        assert_eq!((r.stdout_bytes, r.stderr.as_str()), (10, "short"));
    }

    #[test]
    fn a_reply_longer_than_the_request_allows_is_refused_from_its_length() {
        let req = Request::ReadFile {
            path: "f".into(),
            max_bytes: 3,
        };
        let limit = req.reply_limit();
        assert_eq!(limit, 4 + SMALL_REPLY_MAX_BYTES);
        // Only the length prefix arrives: refused before any body.
        let claim = ((limit + 1) as u32).to_be_bytes();
        let e = read_reply(&mut &claim[..], &req).unwrap_err();
        assert!(e.to_string().contains("limit"), "{e}");
        // Within the limit but more data than asked: cut to 3 bytes' worth.
        let sent = Response::FileData {
            size_bytes: 9,
            data_b64: crate::base64_encode(b"123456789"),
            truncated: false,
        };
        match read_reply(&mut frame(&sent).as_slice(), &req).unwrap() {
            Some(Response::FileData {
                data_b64,
                truncated,
                ..
            }) => {
                assert_eq!(crate::base64_decode(&data_b64).unwrap(), b"123");
                assert!(truncated);
            }
            other => panic!("{other:?}"),
        }
        // The hard ceiling holds whatever a request asks for.
        let greedy = Request::Exec(ExecRequest {
            max_output_bytes: usize::MAX,
            ..Default::default()
        });
        assert_eq!(greedy.reply_limit(), MAX_FRAME_BYTES);
        assert_eq!(Request::Ping.reply_limit(), SMALL_REPLY_MAX_BYTES);
    }

    #[test]
    fn listings_stream_into_entries_and_stop_at_the_entry_cap() {
        let req = Request::Manifest {
            path: String::new(),
        };
        let sent = Response::Manifest {
            entries: vec![entry("a"), entry("b")],
        };
        assert_eq!(
            read_reply(&mut frame(&sent).as_slice(), &req).unwrap(),
            Some(sent)
        );
        let files = Response::Files {
            entry: entry(""),
            entries: vec![entry("x")],
        };
        let list = Request::ListFiles {
            path: String::new(),
            recursive: false,
        };
        assert_eq!(
            read_reply(&mut frame(&files).as_slice(), &list).unwrap(),
            Some(files)
        );
        let err = Response::Error {
            kind: ErrorKind::NotFound,
            message: "no such path".into(),
        };
        assert_eq!(
            read_reply(&mut frame(&err).as_slice(), &req).unwrap(),
            Some(err)
        );
        // One entry over the cap (minimal entries, well within the bytes).
        let mut body = String::from(r#"{"kind":"manifest","entries":["#);
        for i in 0..=MAX_LISTING_ENTRIES {
            if i > 0 {
                body.push(',');
            }
            body.push_str(r#"{"path":"p","artifact_type":"file","size_bytes":0}"#);
        }
        body.push_str("]}");
        let mut raw = (body.len() as u32).to_be_bytes().to_vec();
        raw.extend_from_slice(body.as_bytes());
        let e = read_reply(&mut raw.as_slice(), &req).unwrap_err();
        assert!(e.to_string().contains("more than 200000 entries"), "{e}");
        // Another kind of answer to a listing is a clear error.
        let e = read_reply(&mut frame(&Response::Ok).as_slice(), &req).unwrap_err();
        assert!(e.to_string().contains("\"ok\" answer"), "{e}");
    }
}
