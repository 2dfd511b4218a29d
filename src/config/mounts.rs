//! The grammar of container mounts. Pyxis takes them as one argument,
//! `--container-mounts=SRC:DST[:FLAGS],SRC:DST[:FLAGS],...`: `,` separates
//! mounts and `:` their fields, with no way to escape either. So a mount
//! source or target (and every path that becomes one: `checkpoint_path`,
//! `execution.output_dir`) holds neither, nor a control character, and the
//! flags after a target's `:` are one word of letters, digits and `+=_.-`
//! (`ro`, `rw`, `x-create=dir`). Checked at the config line, so a value
//! cannot smuggle in another mount.

/// Checks a mount source or target path; the error names the path.
pub fn check_path(path: &str) -> Result<(), String> {
    match path.chars().find(|c| matches!(c, ',' | ':') || c.is_control()) {
        Some(c) => {
            Err(format!("mount path `{}` contains {c:?}, which --container-mounts cannot express", path.escape_debug()))
        }
        None => Ok(()),
    }
}

/// Splits a mount's container side, `target[:flags]`.
pub fn split_target(dst: &str) -> (&str, Option<&str>) {
    match dst.split_once(':') {
        Some((t, f)) => (t, Some(f)),
        None => (dst, None),
    }
}

/// Checks the flags after a mount target (`ro`, `rw`, `x-create=dir`).
pub fn check_flags(flags: &str) -> Result<(), String> {
    if !flags.is_empty() && flags.chars().all(|c| c.is_ascii_alphanumeric() || "+=_.-".contains(c)) {
        return Ok(());
    }
    Err(format!(
        "mount flags `{}` must be one word of letters, digits and `+=_.-` (e.g. `ro`); `,` and `:` would start another mount",
        flags.escape_debug()
    ))
}

/// Checks a mount's container side, `target[:flags]`.
pub fn check_target(dst: &str) -> Result<(), String> {
    let (target, flags) = split_target(dst);
    check_path(target)?;
    flags.map_or(Ok(()), check_flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts() {
        assert!(check_path("/lustre/hf cache/é").is_ok());
        for bad in ["/a,b", "/a:b", "/a\nb"] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
        for ok in ["/data", "/data:ro", "/data:x-create=dir", "/d:ro+rprivate"] {
            assert!(check_target(ok).is_ok(), "{ok}");
        }
        for bad in ["/data:ro,/etc:/host-etc", "/data:", "/data:ro:rw", "/d,/e:/f", "/d:r o"] {
            assert!(check_target(bad).is_err(), "{bad:?}");
        }
    }
}
