//! A reader between a tar stream and the `tar` crate that checks every
//! 512-byte header before the crate sees it, so a hostile archive cannot
//! make the reader allocate or write without bound.
//!
//! The `tar` crate reads a GNU long name (`L`), long link (`K`) or PAX
//! extension (`x`) member whole into memory, however long it claims to be:
//! a stream claiming a 1 GiB name drove the host to 1.5 GiB of memory. The
//! guard refuses such a member over [`TarLimits::meta_bytes`] from its
//! header, and refuses a member, a member count or a whole archive over the
//! other limits the same way, before any of its content is read.
//!
//! To know where the next header is, the guard follows the stream exactly
//! as the crate does (a header, then its size rounded up to 512 bytes, up
//! to the first all-zero header). Two things could make them disagree, and
//! both are refused: a PAX `size` record (it overrides the header's size)
//! and GNU sparse members (`S`, with extension headers of their own; pyro
//! never writes them). After the end-of-archive block the rest of the stream
//! passes through, still counted against the total.

use std::fmt;
use std::io::{self, Read};

/// Largest GNU long name, long link or PAX extension member accepted: a
/// path is at most 4096 bytes on Linux, so 64 KiB leaves room for a PAX
/// header carrying several of them and extended attributes.
pub const MAX_TAR_META_BYTES: u64 = 64 * 1024;

const BLOCK: u64 = 512;

/// What an archive may hold. Exceeding any of these is a [`LimitError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TarLimits {
    /// Largest `L`, `K`, `x` or `g` member.
    pub meta_bytes: u64,
    /// Largest content of one member.
    pub member_bytes: u64,
    /// Bytes of the whole stream: headers, content, padding, and whatever
    /// follows the end of the archive.
    pub total_bytes: u64,
    /// Most members (extension members not counted).
    pub members: u64,
}

impl TarLimits {
    /// Only the metadata cap: for archives from a trusted side (the host's
    /// seeds into the guest, the host's own baseline) that may be big.
    pub const fn metadata_only() -> TarLimits {
        TarLimits {
            meta_bytes: MAX_TAR_META_BYTES,
            member_bytes: u64::MAX,
            total_bytes: u64::MAX,
            members: u64::MAX,
        }
    }
}

/// A limit of [`TarLimits`] was hit; carried inside the `io::Error` the
/// reader returns (see [`limit_error`]), so callers can tell a refusal for
/// size from a damaged archive.
#[derive(Debug, Clone)]
pub struct LimitError(pub String);

impl fmt::Display for LimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LimitError {}

/// The [`LimitError`] inside `e`, if that is what it is.
pub fn limit_error(e: &io::Error) -> Option<&LimitError> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<LimitError>())
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// The next bytes are a header.
    Header,
    /// Handing out the checked header; then `left` bytes of its content
    /// and padding, the first `body` of which are content.
    Serve {
        off: usize,
        left: u64,
        body: u64,
    },
    Content {
        left: u64,
        body: u64,
    },
    /// After the end-of-archive block.
    Rest,
}

/// See the module doc. Wraps the raw stream; hand it to `tar::Archive`.
pub struct BoundedTar<R> {
    inner: R,
    limits: TarLimits,
    state: State,
    header: [u8; BLOCK as usize],
    /// Content of the current `L` or `x` member, kept (it is small) to name
    /// the next member in messages and to check PAX records.
    meta: Option<(u8, Vec<u8>)>,
    /// The last long name, for messages.
    long_name: Option<String>,
    total: u64,
    members: u64,
    /// Set once a check failed: every later read fails the same way.
    failed: Option<(io::ErrorKind, String, bool)>,
}

impl<R: Read> BoundedTar<R> {
    pub fn new(inner: R, limits: TarLimits) -> BoundedTar<R> {
        BoundedTar {
            inner,
            limits,
            state: State::Header,
            header: [0; BLOCK as usize],
            meta: None,
            long_name: None,
            total: 0,
            members: 0,
            failed: None,
        }
    }

    /// Bytes of the stream read so far.
    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Reads the rest of the stream (still within the total limit).
    pub fn drain(&mut self) -> io::Result<()> {
        let mut buf = [0u8; 16 * 1024];
        while self.read(&mut buf)? > 0 {}
        Ok(())
    }

    fn fail(&mut self, kind: io::ErrorKind, msg: String, limit: bool) -> io::Error {
        self.failed = Some((kind, msg, limit));
        self.error()
    }

    fn error(&self) -> io::Error {
        match &self.failed {
            Some((kind, msg, true)) => io::Error::new(*kind, LimitError(msg.clone())),
            Some((kind, msg, false)) => io::Error::new(*kind, msg.clone()),
            None => io::Error::other("no error"),
        }
    }

    fn count(&mut self, n: u64) -> io::Result<()> {
        self.total = self.total.saturating_add(n);
        if self.total > self.limits.total_bytes {
            let cap = self.limits.total_bytes;
            return Err(self.fail(
                io::ErrorKind::InvalidData,
                format!("the archive is over the {cap}-byte limit"),
                true,
            ));
        }
        Ok(())
    }

    /// Reads the next header whole; false at a clean end of stream.
    fn fill_header(&mut self) -> io::Result<bool> {
        let mut got = 0;
        while got < self.header.len() {
            match self.inner.read(&mut self.header[got..]) {
                Ok(0) if got == 0 => return Ok(false),
                Ok(0) => {
                    return Err(self.fail(
                        io::ErrorKind::UnexpectedEof,
                        "the archive ends inside a header".into(),
                        false,
                    ))
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Checks the header just read and sets what follows it.
    fn check_header(&mut self) -> io::Result<()> {
        fn bad<R: Read>(this: &mut BoundedTar<R>, msg: String) -> io::Result<()> {
            Err(this.fail(io::ErrorKind::InvalidData, msg, false))
        }
        fn limit<R: Read>(this: &mut BoundedTar<R>, msg: String) -> io::Result<()> {
            Err(this.fail(io::ErrorKind::InvalidData, msg, true))
        }
        if self.header.iter().all(|b| *b == 0) {
            // The end of the archive: the tar crate stops reading here.
            self.count(BLOCK)?;
            self.state = State::Serve {
                off: 0,
                left: 0,
                body: 0,
            };
            return Ok(());
        }
        let h = tar::Header::from_byte_slice(&self.header);
        let sum = self.header[..148]
            .iter()
            .chain(&self.header[156..])
            .fold(8 * 32u32, |a, b| a + u32::from(*b));
        if h.cksum().ok() != Some(sum) {
            return bad(self, "archive header checksum mismatch".into());
        }
        let size = match h.entry_size() {
            Ok(s) => s,
            Err(e) => return bad(self, format!("bad archive header: {e}")),
        };
        let Some(padded) = size.checked_add(BLOCK - 1).map(|s| s & !(BLOCK - 1)) else {
            return bad(self, "archive member size overflows".into());
        };
        let kind = h.as_bytes()[156];
        let name = self
            .long_name
            .take()
            .unwrap_or_else(|| String::from_utf8_lossy(&h.path_bytes()).into_owned());
        match kind {
            b'L' | b'K' | b'x' | b'g' => {
                if size > self.limits.meta_bytes {
                    let what = match kind {
                        b'L' => "GNU long name",
                        b'K' => "GNU long link",
                        b'x' => "PAX extension",
                        _ => "PAX global extension",
                    };
                    let cap = self.limits.meta_bytes;
                    return limit(
                        self,
                        format!("a {what} header of {size} bytes is over the {cap}-byte limit for archive metadata"),
                    );
                }
                if kind == b'L' || kind == b'x' {
                    self.meta = Some((kind, Vec::with_capacity(size as usize)));
                }
            }
            b'S' => {
                return bad(
                    self,
                    format!("member {name:?} is a GNU sparse file, which is not supported; make the archive without --sparse"),
                )
            }
            _ => {
                self.members += 1;
                if self.members > self.limits.members {
                    let cap = self.limits.members;
                    return limit(self, format!("the archive has more than {cap} members"));
                }
                if size > self.limits.member_bytes {
                    let cap = self.limits.member_bytes;
                    return limit(
                        self,
                        format!("member {name:?} is {size} bytes, over the {cap}-byte limit"),
                    );
                }
            }
        }
        // The whole member is counted before any of its content arrives.
        self.count(BLOCK.saturating_add(padded))?;
        self.state = State::Serve {
            off: 0,
            left: padded,
            body: size,
        };
        Ok(())
    }

    /// The `L` or `x` member whose content just ended.
    fn finish_meta(&mut self) -> io::Result<()> {
        let Some((kind, data)) = self.meta.take() else {
            return Ok(());
        };
        if kind == b'L' {
            let end = data.iter().position(|b| *b == 0).unwrap_or(data.len());
            self.long_name = Some(String::from_utf8_lossy(&data[..end]).into_owned());
            return Ok(());
        }
        for ext in tar::PaxExtensions::new(&data) {
            match ext {
                Ok(ext) if ext.key_bytes() == b"size" => {
                    return Err(self.fail(
                        io::ErrorKind::InvalidData,
                        "a PAX header overrides a member's size, which is not supported".into(),
                        false,
                    ))
                }
                Ok(ext) => {
                    if ext.key_bytes() == b"path" {
                        self.long_name =
                            Some(String::from_utf8_lossy(ext.value_bytes()).into_owned());
                    }
                }
                Err(e) => {
                    return Err(self.fail(
                        io::ErrorKind::InvalidData,
                        format!("malformed PAX header: {e}"),
                        false,
                    ))
                }
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for BoundedTar<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.failed.is_some() {
            return Err(self.error());
        }
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            match self.state {
                State::Rest => {
                    let n = self.inner.read(out)?;
                    self.count(n as u64)?;
                    return Ok(n);
                }
                State::Header => {
                    if !self.fill_header()? {
                        return Ok(0);
                    }
                    self.check_header()?;
                }
                State::Serve { off, left, body } => {
                    let n = out.len().min(self.header.len() - off);
                    out[..n].copy_from_slice(&self.header[off..off + n]);
                    let off = off + n;
                    self.state = if off < self.header.len() {
                        State::Serve { off, left, body }
                    } else if self.header.iter().all(|b| *b == 0) {
                        State::Rest
                    } else if left > 0 {
                        State::Content { left, body }
                    } else {
                        self.finish_meta()?;
                        State::Header
                    };
                    return Ok(n);
                }
                State::Content { left, body } => {
                    let want = usize::try_from(left).unwrap_or(usize::MAX).min(out.len());
                    let n = self.inner.read(&mut out[..want])?;
                    if n == 0 {
                        // Cut short: the tar crate reports it.
                        return Ok(0);
                    }
                    let content = usize::try_from(body).unwrap_or(usize::MAX).min(n);
                    if let Some((_, data)) = self.meta.as_mut() {
                        data.extend_from_slice(&out[..content]);
                    }
                    let left = left - n as u64;
                    let body = body - content as u64;
                    self.state = if left > 0 {
                        State::Content { left, body }
                    } else {
                        self.finish_meta()?;
                        State::Header
                    };
                    return Ok(n);
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "../../tests/support/raw_tar.rs"]
mod raw_tar;

#[cfg(test)]
mod tests {
    use super::raw_tar::header_only;
    use super::raw_tar::raw_tar;
    use super::*;

    /// A stream that says it has `claim` bytes of long name and then
    /// produces them on demand, never holding them.
    fn long_name_bomb(kind: tar::EntryType, claim: u64) -> impl Read {
        io::Cursor::new(header_only("././@LongLink", kind, claim))
            .chain(io::repeat(b'a').take(claim))
    }

    fn names(archive: impl Read) -> io::Result<Vec<String>> {
        let mut ar = tar::Archive::new(archive);
        let mut out = Vec::new();
        for e in ar.entries()? {
            let mut e = e?;
            out.push(String::from_utf8_lossy(&e.path_bytes()).into_owned());
            io::copy(&mut e, &mut io::sink())?;
        }
        Ok(out)
    }

    #[test]
    fn metadata_members_over_the_cap_are_refused_from_their_header() {
        for kind in [
            tar::EntryType::GNULongName,
            tar::EntryType::GNULongLink,
            tar::EntryType::XHeader,
            tar::EntryType::XGlobalHeader,
        ] {
            // 1 GiB claimed: refused before the crate reads any of it.
            let mut g = BoundedTar::new(long_name_bomb(kind, 1 << 30), TarLimits::metadata_only());
            let e = names(&mut g).unwrap_err();
            let lim = limit_error(&e).unwrap_or_else(|| panic!("{kind:?}: {e}"));
            assert!(lim.0.contains("over the 65536-byte limit"), "{lim}");
            assert_eq!(g.total(), 0, "nothing counted past the header");
        }
        // At the cap, a long name is read as usual.
        let name = "n".repeat(MAX_TAR_META_BYTES as usize - 1);
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        b.append_data(&mut h, &name, &b"hi"[..]).unwrap();
        let bytes = b.into_inner().unwrap();
        let got = names(BoundedTar::new(
            bytes.as_slice(),
            TarLimits::metadata_only(),
        ))
        .unwrap();
        assert_eq!(got, [name]);
    }

    #[test]
    fn members_and_totals_over_their_limits_are_refused_before_their_content() {
        let limits = TarLimits {
            meta_bytes: MAX_TAR_META_BYTES,
            member_bytes: 1000,
            total_bytes: 4096,
            members: 3,
        };
        let big = vec![1u8; 1001];
        let e = names(BoundedTar::new(
            raw_tar(&[("big", tar::EntryType::Regular, &big, "")]).as_slice(),
            limits,
        ))
        .unwrap_err();
        assert!(
            limit_error(&e).is_some_and(|l| l.0.contains("\"big\" is 1001 bytes")),
            "{e}"
        );
        // 4 members of 1000 bytes: 4 x 1536 > 4096 on the third.
        let m = vec![2u8; 1000];
        let four = raw_tar(&[
            ("a", tar::EntryType::Regular, &m, ""),
            ("b", tar::EntryType::Regular, &m, ""),
            ("c", tar::EntryType::Regular, &m, ""),
        ]);
        let e = names(BoundedTar::new(four.as_slice(), limits)).unwrap_err();
        assert!(
            limit_error(&e).is_some_and(|l| l.0.contains("over the 4096-byte limit")),
            "{e}"
        );
        let many = raw_tar(&[
            ("a", tar::EntryType::Regular, b"", ""),
            ("b", tar::EntryType::Regular, b"", ""),
            ("c", tar::EntryType::Regular, b"", ""),
            ("d", tar::EntryType::Regular, b"", ""),
        ]);
        let e = names(BoundedTar::new(many.as_slice(), limits)).unwrap_err();
        assert!(
            limit_error(&e).is_some_and(|l| l.0.contains("more than 3 members")),
            "{e}"
        );
        // What follows the end of the archive counts too.
        let mut tail = raw_tar(&[("a", tar::EntryType::Regular, b"x", "")]);
        tail.extend(std::iter::repeat_n(7u8, 8192));
        let mut g = BoundedTar::new(tail.as_slice(), limits);
        assert_eq!(names(&mut g).unwrap(), ["a"]);
        let e = g.drain().unwrap_err();
        assert!(limit_error(&e).is_some(), "{e}");
    }

    #[test]
    fn the_guard_agrees_with_the_crate_on_honest_archives() {
        let mut b = tar::Builder::new(Vec::new());
        let long = format!("{}/file", "d".repeat(300));
        let mut h = tar::Header::new_gnu();
        h.set_size(700);
        b.append_data(&mut h, &long, &[3u8; 700][..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "link", "x".repeat(200)).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        b.append_data(&mut h, "empty", io::empty()).unwrap();
        b.append_pax_extensions([("path", &b"pax/name"[..])])
            .unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_size(3);
        b.append_data(&mut h, "short", &b"abc"[..]).unwrap();
        let bytes = b.into_inner().unwrap();
        let plain = names(bytes.as_slice()).unwrap();
        let mut g = BoundedTar::new(bytes.as_slice(), TarLimits::metadata_only());
        assert_eq!(names(&mut g).unwrap(), plain);
        assert_eq!(plain, [long.as_str(), "link", "empty", "pax/name"]);
        g.drain().unwrap();
        assert_eq!(g.total(), bytes.len() as u64);
    }

    #[test]
    fn what_could_desynchronize_the_guard_is_refused() {
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([("size", &b"5"[..])]).unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_size(0);
        b.append_data(&mut h, "f", io::empty()).unwrap();
        let e = names(BoundedTar::new(
            b.into_inner().unwrap().as_slice(),
            TarLimits::metadata_only(),
        ))
        .unwrap_err();
        assert!(e.to_string().contains("overrides a member's size"), "{e}");
        let sparse = raw_tar(&[("s", tar::EntryType::GNUSparse, b"", "")]);
        let e = names(BoundedTar::new(
            sparse.as_slice(),
            TarLimits::metadata_only(),
        ))
        .unwrap_err();
        assert!(e.to_string().contains("GNU sparse"), "{e}");
        let mut bad = raw_tar(&[("f", tar::EntryType::Regular, b"x", "")]);
        bad[0] ^= 1;
        let e = names(BoundedTar::new(bad.as_slice(), TarLimits::metadata_only())).unwrap_err();
        assert!(e.to_string().contains("checksum"), "{e}");
    }
}
