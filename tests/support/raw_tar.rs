//! Tar archives for tests that must carry hostile members (`..`, absolute
//! names, links out): names are written into the header as raw bytes,
//! past the checks `tar::Builder` would make. Shared by the host's and the
//! agent's tests.

/// `(name, type, content, link target)` members, mode 0644.
pub fn raw_tar(members: &[(&str, tar::EntryType, &[u8], &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, data, link) in members {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        let raw = h.as_old_mut();
        raw.name[..name.len()].copy_from_slice(name.as_bytes());
        raw.linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}
