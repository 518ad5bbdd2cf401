//! Tar archives for tests that must carry hostile members (`..`, absolute
//! names, links out, sizes no one sends): names are written into the
//! header as raw bytes, past the checks `tar::Builder` would make. Shared
//! by the host's and the agent's tests (each includes this file alone, by
//! its path) and by the integration tests through `support`; each uses
//! part of it.
#![allow(dead_code)]

/// A GNU header for a `kind` member named `name` linking to `link`,
/// claiming `size` bytes of content, mode 0644, checksum set.
fn header(name: &str, kind: tar::EntryType, size: u64, link: &str) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_size(size);
    let raw = h.as_old_mut();
    raw.name[..name.len()].copy_from_slice(name.as_bytes());
    raw.linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_cksum();
    h
}

/// `(name, type, content, link target)` members, mode 0644.
pub fn raw_tar(members: &[(&str, tar::EntryType, &[u8], &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, data, link) in members {
        b.append(&header(name, *kind, data.len() as u64, link), *data)
            .unwrap();
    }
    b.into_inner().unwrap()
}

/// A tar header alone, claiming `size` bytes of `kind` content: what a
/// hostile sender puts before content it then streams (or never sends).
pub fn header_only(name: &str, kind: tar::EntryType, size: u64) -> Vec<u8> {
    header(name, kind, size, "").as_bytes().to_vec()
}
