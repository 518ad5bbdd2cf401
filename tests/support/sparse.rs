//! Sparse file copy for tests and benchmarks (the test host's busybox `cp`
//! has no --sparse): copies only the data extents, leaving holes as holes.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

pub fn copy_sparse(src: &Path, dst: &Path) -> std::io::Result<()> {
    let from = File::open(src)?;
    let len = from.metadata()?.len();
    let _ = std::fs::remove_file(dst);
    let to = File::create(dst)?;
    to.set_len(len)?;
    let mut pos = 0i64;
    let mut buf = vec![0u8; 1 << 20];
    while (pos as u64) < len {
        // SAFETY: lseek on an open descriptor.
        let data = unsafe { libc::lseek(from.as_raw_fd(), pos, libc::SEEK_DATA) };
        if data < 0 {
            break; // ENXIO: only a hole remains
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(from.as_raw_fd(), data, libc::SEEK_HOLE) };
        let mut off = data as u64;
        while off < hole as u64 {
            let n = ((hole as u64 - off) as usize).min(buf.len());
            from.read_exact_at(&mut buf[..n], off)?;
            to.write_all_at(&buf[..n], off)?;
            off += n as u64;
        }
        pos = hole;
    }
    Ok(())
}
