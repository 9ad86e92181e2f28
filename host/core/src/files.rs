//! Writing a file so that a crash or a failed write never leaves half of it.

use std::{io::Write, path::Path};

/// Writes `bytes` to `path` whole or not at all: to a hidden temporary file beside it
/// (`.NAME.PID-N.tmp`, its own for each write, so two writers of one file never share it),
/// flushed to disk, then renamed over `path`: the last rename wins, whole. On failure the
/// temporary file is removed and `path` is as it was.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let Some(name) = path.file_name() else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a file name",
        ));
    };
    if path.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::IsADirectory,
            "is a directory; name a file in it",
        ));
    }
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_file_name(format!(
        ".{}.{}-{n}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Makes sure `dir` is a directory this process can write files in, creating it if
/// missing: what a command checks of its `--out` before it spends minutes measuring, so a
/// report it cannot write refuses the run instead of losing it.
pub fn writable_dir(dir: &Path) -> Result<(), String> {
    let give = "give a directory you can write (it is created if missing)";
    if dir.exists() && !dir.is_dir() {
        return Err(format!(
            "{} is a file, not a directory; {give}",
            dir.display()
        ));
    }
    let probe = dir.join(format!(".dubchain-write-probe-{}", std::process::id()));
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&probe, b""))
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| format!("{}: cannot write there ({e}); {give}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writers of one file at once each leave it whole: the file is one of their contents,
    /// never a mix, and no temporary is left beside it.
    #[test]
    fn concurrent_writers_leave_one_whole_file() {
        let dir = std::env::temp_dir().join(format!("dubchain-race-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("gates.json");
        let contents: Vec<Vec<u8>> = (0..8u8)
            .map(|i| vec![b'a' + i; 64 * 1024 + usize::from(i) * 1000])
            .collect();
        for _ in 0..20 {
            std::thread::scope(|s| {
                for c in &contents {
                    s.spawn(|| write_atomic(&file, c).unwrap());
                }
            });
            let now = std::fs::read(&file).unwrap();
            assert!(
                contents.contains(&now),
                "a mixed file of {} bytes",
                now.len()
            );
        }
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no temporary left"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_output_directory_is_checked_and_made_before_use() {
        let dir = std::env::temp_dir().join(format!("dubchain-out-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let out = dir.join("a/b");
        writable_dir(&out).unwrap();
        assert!(out.is_dir());
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0, "no probe left");
        let file = dir.join("file");
        std::fs::write(&file, b"mine").unwrap();
        let err = writable_dir(&file).unwrap_err();
        assert!(err.contains("is a file, not a directory"), "{err}");
        let err = writable_dir(&file.join("below")).unwrap_err();
        assert!(err.contains("cannot write there"), "{err}");
        assert_eq!(std::fs::read(&file).unwrap(), b"mine");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_write_leaves_neither_the_file_nor_a_temporary() {
        let dir = std::env::temp_dir().join(format!("dubchain-files-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let file = dir.join("out.json");
        write_atomic(&file, b"one").unwrap();
        write_atomic(&file, b"two").unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"two");

        let err = write_atomic(&dir.join("sub"), b"x").unwrap_err();
        assert!(err.to_string().contains("is a directory"), "{err}");
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["out.json", "sub"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
