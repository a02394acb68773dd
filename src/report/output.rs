//! Writing what a command outputs (reports, summaries, rejects, metrics): atomically and
//! privately, through a link or to standard output, and never onto the files a command reads.

/// Writes `contents` to `path` atomically, as a private file (0600): see [`write_output`].
pub fn write_atomically(path: &std::path::Path, contents: &[u8]) -> std::io::Result<()> {
    write_output(path, contents, 0o600)
}

/// Writes `contents` to `path`: `-` is standard output; an existing symlink is written through
/// (the link stays); a path that is not a regular file (`/dev/stdout`, a FIFO) is written in
/// place; a regular file is replaced atomically by a temporary file beside it (in the link
/// target's directory), synced, with `mode`, then renamed over it.
pub fn write_output(path: &std::path::Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    write_output_with(path, mode, |out| out.write_all(contents))
}

/// [`write_output`] for contents produced piece by piece by `fill` (through a buffer), so
/// nothing has to hold them whole; the file is replaced only if `fill` succeeds.
pub fn write_output_with(
    path: &std::path::Path,
    mode: u32,
    fill: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    use std::io::{BufWriter, Write};
    if path.as_os_str() == "-" || names_stdout(path) {
        let mut out = BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
        fill(&mut out)?;
        return out.flush();
    }
    let target = resolve_links(path)?;
    if let Ok(meta) = std::fs::metadata(&target)
        && !meta.is_file()
    {
        let file = std::fs::OpenOptions::new().write(true).open(&target)?;
        let mut out = BufWriter::with_capacity(1 << 16, file);
        fill(&mut out)?;
        return out.flush();
    }
    replace_with(&target, mode, fill)
}

/// Writes a file that must never be written through a symbolic link (the HTML report: faces
/// and names): `path` itself is replaced atomically, with `mode`; a link found there is
/// replaced, never followed. `-` is standard output.
pub fn write_private_with(
    path: &std::path::Path,
    mode: u32,
    fill: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    use std::io::{BufWriter, Write};
    if path.as_os_str() == "-" {
        let mut out = BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
        fill(&mut out)?;
        return out.flush();
    }
    replace_with(path, mode, fill)
}

/// A temporary file beside `target` (created anew, with `mode`), filled, synced, then renamed
/// over `target`: readers see the old file or the new one, never a part.
fn replace_with(
    target: &std::path::Path,
    mode: u32,
    fill: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    use std::io::BufWriter;
    use std::os::unix::fs::PermissionsExt;
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".face-enroll.")
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(&dir)?;
    let mut out = BufWriter::with_capacity(1 << 16, tmp);
    fill(&mut out)?;
    let tmp = out.into_inner().map_err(|e| e.into_error())?;
    tmp.as_file().sync_all()?;
    tmp.persist(target).map_err(|e| e.error)?;
    Ok(())
}

/// `/dev/stdout` and its aliases, directly or through a symlink: written on our own standard
/// output, so a redirection to a file or a pipe is honoured and nothing is ever replaced.
fn names_stdout(path: &std::path::Path) -> bool {
    let aliases = ["/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"];
    let mut current = path.to_path_buf();
    for _ in 0..40 {
        if aliases.iter().any(|a| current == std::path::Path::new(a)) {
            return true;
        }
        match std::fs::read_link(&current) {
            Ok(link) => {
                current = match current.parent() {
                    Some(parent) if link.is_relative() => parent.join(link),
                    _ => link,
                };
            }
            Err(_) => return false,
        }
    }
    false
}

/// Follows symlinks (relative ones from their own directory) to the path they name; a
/// dangling link names the file to create. Bounded, like the kernel's limit.
fn resolve_links(path: &std::path::Path) -> std::io::Result<std::path::PathBuf> {
    let mut current = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let link = std::fs::read_link(&current)?;
                current = match current.parent() {
                    Some(parent) if link.is_relative() => parent.join(link),
                    _ => link,
                };
            }
            _ => return Ok(current),
        }
    }
    Err(std::io::Error::other(format!(
        "{}: too many levels of symbolic links",
        path.display()
    )))
}

/// Refuses an output path that is the ledger, its lock or the manifest (the same file, by
/// device and inode, or by path when it does not exist yet): writing there would destroy it.
pub fn refuse_clobbering(
    flag: &str,
    output: &std::path::Path,
    precious: &[&std::path::Path],
) -> Result<(), crate::exit::UsageError> {
    use std::os::unix::fs::MetadataExt;
    if output.as_os_str() == "-" {
        return Ok(());
    }
    let id = |p: &std::path::Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    let absolute = |p: &std::path::Path| {
        resolve_links(p)
            .ok()
            .and_then(|p| std::path::absolute(p).ok())
    };
    for keep in precious {
        let same_file = id(output).is_some() && id(output) == id(keep);
        let same_path = absolute(output).is_some() && absolute(output) == absolute(keep);
        if same_file || same_path {
            return Err(crate::exit::UsageError::new(format!(
                "{flag} {}: that is {}, which this command reads; writing there would destroy it. \
                 Give another path",
                output.display(),
                keep.display()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_write_replaces_a_link_planted_at_its_path_and_leaves_the_links_target_alone() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere.html");
        std::fs::write(&elsewhere, "keep").unwrap();
        let path = dir.path().join("report.html");
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        write_private_with(&path, 0o600, |out| out.write_all(b"<html>")).unwrap();
        assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "keep");
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.is_file());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "<html>");
    }

    #[test]
    fn atomic_writes_leave_no_temporary_file_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        write_atomically(&path, b"{}").unwrap();
        write_atomically(&path, b"{\"a\":1}").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"a\":1}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn writing_through_a_symlink_keeps_the_link_and_makes_a_private_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.json");
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink("real.json", &link).unwrap();
        write_atomically(&link, b"{}").unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read(&real).unwrap(), b"{}");
        let mode = std::fs::metadata(&real).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn an_output_on_the_ledger_its_lock_or_the_manifest_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = dir.path().join("m.ledger.jsonl");
        std::fs::write(&ledger, b"").unwrap();
        let lock = dir.path().join("m.ledger.jsonl.lock");
        let other = dir.path().join("s.json");
        let keep = [ledger.as_path(), lock.as_path()];
        assert!(refuse_clobbering("--summary", &ledger, &keep).is_err());
        assert!(refuse_clobbering("--summary", &lock, &keep).is_err());
        assert!(refuse_clobbering("--summary", &other, &keep).is_ok());
        assert!(refuse_clobbering("--summary", std::path::Path::new("-"), &keep).is_ok());
    }
}
