//! Sparse file copies: a new VM's scratch disk is a copy of the
//! environment's empty template, and only its allocated extents are copied.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Copies `src` to a new private (0600) file `dst` preserving holes;
/// returns the bytes of data copied.
pub fn copy_sparse(src: &Path, dst: &Path) -> io::Result<u64> {
    let from = File::open(src)?;
    let len = from.metadata()?.len();
    let to = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(super::paths::PRIVATE_FILE_MODE)
        .open(dst)?;
    to.set_len(len)?;
    let fin = from.as_raw_fd();
    let mut copied = 0u64;
    let mut pos: i64 = 0;
    while (pos as u64) < len {
        // SAFETY: lseek on a valid descriptor.
        let data = unsafe { libc::lseek(fin, pos, libc::SEEK_DATA) };
        if data < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENXIO) {
                break; // only a hole remains
            }
            return Err(e);
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fin, data, libc::SEEK_HOLE) };
        if hole < 0 {
            return Err(io::Error::last_os_error());
        }
        copied += copy_range(&from, &to, data as u64, (hole - data) as u64)?;
        pos = hole;
    }
    to.sync_all()?;
    Ok(copied)
}

/// Copies one extent: copy_file_range where the kernel allows it (same
/// filesystem), plain reads and writes otherwise (EXDEV across mounts).
fn copy_range(from: &File, to: &File, start: u64, len: u64) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let (mut off_in, mut off_out) = (start as i64, start as i64);
    let mut left = len as usize;
    while left > 0 {
        // SAFETY: valid descriptors and offsets owned by this function.
        let n = unsafe {
            libc::copy_file_range(
                from.as_raw_fd(),
                &mut off_in,
                to.as_raw_fd(),
                &mut off_out,
                left,
                0,
            )
        };
        if n > 0 {
            left -= n as usize;
            continue;
        }
        if n == 0 {
            break;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EXDEV)
            | Some(libc::ENOSYS)
            | Some(libc::EINVAL)
            | Some(libc::EOPNOTSUPP) => break,
            _ => return Err(e),
        }
    }
    let mut buf = vec![0u8; 1 << 20];
    let mut off = off_in as u64;
    while left > 0 {
        let n = (left).min(buf.len());
        from.read_exact_at(&mut buf[..n], off)?;
        to.write_all_at(&buf[..n], off)?;
        off += n as u64;
        left -= n;
    }
    Ok(len)
}

/// Bytes actually allocated on disk for a file.
pub fn allocated_bytes(path: &Path) -> io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata(path)?.blocks() * 512)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn copies_data_and_keeps_holes() {
        let dir = crate::temp_dir::TempDir::new("sparse");
        let src = dir.join("src");
        let f = File::create(&src).unwrap();
        f.set_len(64 << 20).unwrap();
        f.write_all_at(b"head", 0).unwrap();
        f.write_all_at(b"tail", (64 << 20) - 4).unwrap();
        drop(f);
        let dst = dir.join("dst");
        copy_sparse(&src, &dst).unwrap();
        assert_eq!(std::fs::read(&src).unwrap(), std::fs::read(&dst).unwrap());
        assert!(
            allocated_bytes(&dst).unwrap() < 4 << 20,
            "copy must stay sparse"
        );
        assert!(copy_sparse(&src, &dst).is_err(), "never overwrites");
    }
}
