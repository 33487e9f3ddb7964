//! Output files and directories that appear only when complete: written under a temporary
//! name beside the destination, synced, then renamed, so an interrupted run never leaves a
//! truncated file or a half-written directory that looks finished.

use std::io::Write;
use std::path::Path;

/// Writes through a buffered temporary file beside `path`, then renames it into place.
pub fn write_atomically(
    path: &Path,
    body: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let tmp = path.with_file_name(format!(".{name}.partial"));
    let result = (|| {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        body(&mut w)?;
        w.flush()?;
        w.get_ref().sync_all()
    })();
    match result {
        Ok(()) => std::fs::rename(&tmp, path),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Fills a staging directory beside `dest` with `fill`, then renames it to `dest`, replacing
/// what was there only once the new one is complete. `io_err` names the path of a failed
/// file-system call in the caller's error type.
pub fn replace_dir<E>(
    dest: &Path,
    io_err: impl Fn(&Path, std::io::Error) -> E,
    fill: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), E> {
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| io_err(&parent, e))?;
    let name = dest.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let staging = parent.join(format!(".{name}.partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let filled = std::fs::create_dir_all(&staging)
        .map_err(|e| io_err(&staging, e))
        .and_then(|()| fill(&staging));
    if let Err(e) = filled {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    let old = parent.join(format!(".{name}.old-{}", std::process::id()));
    let had_old = dest.exists();
    if had_old {
        std::fs::rename(dest, &old).map_err(|e| io_err(dest, e))?;
    }
    std::fs::rename(&staging, dest).map_err(|e| io_err(dest, e))?;
    if had_old {
        let _ = std::fs::remove_dir_all(&old);
    }
    Ok(())
}
