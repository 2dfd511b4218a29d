//! Reading config files as untrusted input: a config comes from a pull
//! request, and what evalctl reads ends up in a PR comment.
//!
//! - Only regular files are read (a FIFO would block forever, `/dev/zero`
//!   never ends), and at most [`MAX_CONFIG_BYTES`] of them.
//! - Composition reads only inside the config's own folder tree:
//!   [`Confined::resolve`] refuses absolute names and `..`, and a name whose
//!   real path (symlinks followed) leaves the folder.
//! - Listing a group folder's options is bounded in depth and count and
//!   never follows a symlinked folder, so it ends on any tree.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// The largest config or group file evalctl reads.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// How deep below a group folder options are listed.
const MAX_LIST_DEPTH: usize = 8;
/// How many options a listing shows at most.
const MAX_LIST_ENTRIES: usize = 1000;

/// Reads a config file: a regular file of at most [`MAX_CONFIG_BYTES`],
/// UTF-8 text. The error says why not, in a few words.
pub fn read(path: &Path) -> Result<String, String> {
    read_regular(path, MAX_CONFIG_BYTES)
}

/// Reads a regular file of at most `limit` bytes as UTF-8 text (files
/// evalctl writes itself, like a saved plan or a state copy, may be larger
/// than a config, but a FIFO or a device is never read).
pub fn read_regular(path: &Path, limit: u64) -> Result<String, String> {
    let too_big = || format!("larger than {} KiB, the most evalctl reads here", limit / 1024);
    let meta = std::fs::metadata(path).map_err(|e| io_reason(&e))?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > limit {
        return Err(too_big());
    }
    let file = std::fs::File::open(path).map_err(|e| io_reason(&e))?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1).read_to_end(&mut bytes).map_err(|e| io_reason(&e))?;
    if bytes.len() as u64 > limit {
        return Err(too_big());
    }
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".into())
}

pub(crate) fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        std::io::ErrorKind::InvalidData => "not UTF-8 text".into(),
        _ => e.to_string(),
    }
}

/// A folder tree composition may read from.
#[derive(Clone, Debug)]
pub struct Confined {
    /// The folder as given (messages show paths below it).
    dir: PathBuf,
    /// Its real path, once it exists.
    real: Option<PathBuf>,
}

/// What a name in the tree is.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// A file inside the tree.
    File(PathBuf),
    /// Nothing by that name.
    Absent,
}

impl Confined {
    pub fn new(dir: &Path) -> Confined {
        Confined { dir: dir.to_path_buf(), real: std::fs::canonicalize(dir).ok() }
    }

    /// Checks that `name` (a `/`-separated relative name such as
    /// `deployment/my_vllm`) is a plain name: no absolute path, no `.` or
    /// `..`, no empty segment, no backslash or NUL.
    pub fn check_name(name: &str) -> Result<(), String> {
        if name.starts_with('/') {
            return Err(format!("`{name}` is an absolute path; defaults name files below the config's folder"));
        }
        for seg in name.split('/') {
            if seg.is_empty() || seg == "." || seg == ".." {
                return Err(format!(
                    "`{name}` is not a plain name (`..`, `.` and empty parts are refused); defaults name files below the config's folder"
                ));
            }
            if seg.contains(['\\', '\0']) || seg.chars().any(char::is_control) {
                return Err(format!("`{}` contains a character a defaults name cannot have", name.escape_debug()));
            }
        }
        Ok(())
    }

    /// The path `name` + `ext` would have in the tree (unchecked: for messages).
    pub fn path(&self, name: &str, ext: &str) -> PathBuf {
        self.dir.join(format!("{name}{ext}"))
    }

    /// Where `name` + `ext` is in the tree, refusing names that are not
    /// plain and files whose real path is outside the tree.
    pub fn resolve(&self, name: &str, ext: &str) -> Result<Found, String> {
        Confined::check_name(name)?;
        let path = self.path(name, ext);
        if std::fs::symlink_metadata(&path).is_err() {
            return Ok(Found::Absent);
        }
        let real =
            std::fs::canonicalize(&path).map_err(|e| format!("cannot read {}: {}", path.display(), io_reason(&e)))?;
        match &self.real {
            Some(root) if real.starts_with(root) => Ok(Found::File(path)),
            _ => Err(format!("{} leads outside the config's folder (to {})", path.display(), real.display())),
        }
    }

    /// Option names (`*.yaml` below `group`, without the extension), sorted;
    /// bounded and without following symlinked folders.
    pub fn options(&self, group: &str) -> Vec<String> {
        if Confined::check_name(group).is_err() {
            return vec![];
        }
        let base = self.dir.join(group);
        let mut out = vec![];
        let mut todo = vec![(base.clone(), 0usize)];
        while let Some((d, depth)) = todo.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else { continue };
            for e in rd.flatten() {
                if out.len() >= MAX_LIST_ENTRIES {
                    return out;
                }
                let Ok(kind) = e.file_type() else { continue };
                let p = e.path();
                if kind.is_dir() && depth < MAX_LIST_DEPTH {
                    todo.push((p, depth + 1));
                } else if !kind.is_dir()
                    && p.extension().is_some_and(|x| x == "yaml")
                    && let Ok(rel) = p.with_extension("").strip_prefix(&base)
                    && rel.components().all(|c| matches!(c, Component::Normal(_)))
                {
                    out.push(rel.to_string_lossy().into_owned());
                }
            }
        }
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain() {
        assert!(Confined::check_name("deployment/my_vllm").is_ok());
        for bad in ["/etc/x", "../x", "a/../../x", "a//b", "./a", "a\\b", "a\nb"] {
            assert!(Confined::check_name(bad).is_err(), "{bad:?}");
        }
    }
}
