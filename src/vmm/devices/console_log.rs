//! The guest console's log file, kept to a fixed size.
//!
//! Guest root can write `/dev/ttyS0` as fast as it likes for as long as
//! the workspace lives; an append-only log would fill the host's disk. The
//! log is a ring instead: when it would grow past its cap, its older half
//! is dropped (the newer half moved to the start of the file, after a line
//! saying how much was dropped), so it always holds the latest output,
//! which is what a diagnosis of a failing guest needs.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Largest size of `serial.log`. A boot writes a few tens of KiB (more
/// with `loglevel=7`); 2 MiB keeps the whole of any honest session's
/// console while bounding what a guest can make the host store (twice
/// this with the previous boot's `serial.log.prev`).
pub const SERIAL_LOG_MAX_BYTES: u64 = 2 * 1024 * 1024;

/// Longest marker line a compaction writes.
const MARKER_ROOM: u64 = 128;

/// A log file that never grows past `cap` bytes (see the module doc).
pub struct RingLog {
    file: File,
    len: u64,
    cap: u64,
    /// Bytes dropped so far, for the marker line.
    dropped: u64,
}

impl RingLog {
    /// Opens (creating) `path`, keeping what it holds, within `cap` (at
    /// least 4 KiB).
    pub fn open(path: &Path, cap: u64) -> io::Result<RingLog> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)?;
        let len = file.metadata()?.len();
        let mut log = RingLog {
            file,
            len,
            cap: cap.max(4096),
            dropped: 0,
        };
        if log.len > log.cap {
            log.compact(0)?;
        }
        Ok(log)
    }

    /// Drops the older part so that `incoming` more bytes fit: keeps at
    /// most half the cap of the newest bytes, from a line start.
    fn compact(&mut self, incoming: u64) -> io::Result<()> {
        // Room for the marker line too: the result is at most half the cap.
        let keep = (self.cap / 2)
            .saturating_sub(incoming.saturating_add(MARKER_ROOM))
            .min(self.len);
        let mut from = self.len - keep;
        // Start the kept part at a line boundary when one is near.
        let mut probe = vec![0u8; keep.min(4096) as usize];
        let n = self.file.read_at(&mut probe, from)?;
        if let Some(nl) = probe[..n].iter().position(|b| *b == b'\n') {
            from += nl as u64 + 1;
        }
        self.dropped += from;
        let marker = format!(
            "[pyro: {} bytes of earlier console output dropped]\n",
            self.dropped
        );
        self.file.write_all_at(marker.as_bytes(), 0)?;
        // Move the kept bytes down, in steps (no buffer of the log's size).
        let mut at = marker.len() as u64;
        let mut buf = vec![0u8; 64 * 1024];
        while from < self.len {
            let want = buf.len().min((self.len - from) as usize);
            let n = self.file.read_at(&mut buf[..want], from)?;
            if n == 0 {
                break;
            }
            self.file.write_all_at(&buf[..n], at)?;
            from += n as u64;
            at += n as u64;
        }
        self.file.set_len(at)?;
        self.len = at;
        Ok(())
    }
}

impl Write for RingLog {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        // More than half the cap in one go: only its tail is worth keeping.
        let half = (self.cap / 2) as usize;
        let (skipped, kept) = if data.len() > half {
            (data.len() - half, &data[data.len() - half..])
        } else {
            (0, data)
        };
        self.dropped += skipped as u64;
        if self.len + kept.len() as u64 > self.cap {
            self.compact(kept.len() as u64)?;
        }
        self.file.write_all_at(kept, self.len)?;
        self.len += kept.len() as u64;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_keeps_the_newest_output_within_its_cap() {
        let path =
            std::env::temp_dir().join(format!("pyro-ring-{}", crate::engine::paths::random_id(4)));
        std::fs::write(&path, "old line from before\n").unwrap();
        let mut log = RingLog::open(&path, SERIAL_LOG_MAX_BYTES).unwrap();
        // 20 MiB of numbered lines, as a chatty guest writes them.
        let mut last = String::new();
        for i in 0..400_000u32 {
            last = format!("console line {i:08} {}\n", "x".repeat(30));
            log.write_all(last.as_bytes()).unwrap();
            let len = std::fs::metadata(&path).unwrap().len();
            assert!(len <= SERIAL_LOG_MAX_BYTES, "{len} bytes after line {i}");
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("[pyro: "), "{}", &text[..80]);
        assert!(text.contains("bytes of earlier console output dropped]\n"));
        assert!(text.ends_with(&last));
        // Whole lines only, after the marker.
        let second = text.lines().nth(1).unwrap();
        assert!(second.starts_with("console line "), "{second}");
        assert!(text.len() as u64 >= SERIAL_LOG_MAX_BYTES / 2 - 4096);
        // One write bigger than the cap keeps only its tail.
        let big = vec![b'y'; (SERIAL_LOG_MAX_BYTES * 3) as usize];
        log.write_all(&big).unwrap();
        log.write_all(b"end\n").unwrap();
        let len = std::fs::metadata(&path).unwrap().len();
        assert!(len <= SERIAL_LOG_MAX_BYTES, "{len}");
        assert!(std::fs::read_to_string(&path).unwrap().ends_with("yend\n"));
        // Reopening a log over its cap (an older VMM's) compacts it.
        drop(log);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(&vec![b'z'; SERIAL_LOG_MAX_BYTES as usize])
            .unwrap();
        RingLog::open(&path, SERIAL_LOG_MAX_BYTES).unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() <= SERIAL_LOG_MAX_BYTES);
        std::fs::remove_file(&path).unwrap();
    }
}
