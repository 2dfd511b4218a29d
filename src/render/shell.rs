//! Quoting for each context a user value can land in inside a job script.
//!
//! - shell words: see `crate::shell` (single-quoted, read back verbatim);
//! - `#SBATCH` lines, parsed by sbatch (not bash), where an unquoted `#`
//!   starts a comment: double-quoted, and values sbatch cannot carry
//!   (quotes, backslashes, newlines, control characters) are refused;
//! - Pyxis `--container-mounts`, where `,` and `:` separate entries and
//!   fields: paths containing them are refused;
//! - Slurm `--output` patterns, where `%` is special: doubled.

pub use crate::shell::quote;

/// The value of an `#SBATCH --flag=VALUE` line, or why it cannot be one.
pub fn sbatch_value(s: &str) -> Result<String, String> {
    if let Some(c) = s.chars().find(|c| matches!(c, '"' | '\\' | '\'') || c.is_control()) {
        return Err(format!(
            "{} cannot appear in an #SBATCH value",
            match c {
                '\n' => "a newline".to_owned(),
                c if c.is_control() => format!("control character U+{:04X}", c as u32),
                c => format!("`{c}`"),
            }
        ));
    }
    if s.chars().all(|c| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c)) && !s.is_empty() {
        return Ok(s.to_owned());
    }
    Ok(format!("\"{s}\""))
}

/// A path usable inside `--container-mounts`, or why not (the grammar of
/// `config::mounts`, checked again where the argument is made).
pub fn mount_path(s: &str) -> Result<&str, String> {
    crate::config::mounts::check_path(s).map(|()| s)
}

/// A path for Slurm's `--output`, with `%` escaped.
pub fn output_pattern(s: &str) -> String {
    s.replace('%', "%%")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote("abc"), "abc");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("it's $(x)"), r"'it'\''s $(x)'");
        assert_eq!(sbatch_value("gpu"), Ok("gpu".into()));
        assert_eq!(sbatch_value("a #b"), Ok("\"a #b\"".into()));
        assert!(sbatch_value("a\"b").is_err());
        assert!(sbatch_value("a\nb").unwrap_err().contains("newline"));
        assert!(mount_path("/a,b").is_err());
        assert_eq!(output_pattern("/x/100%/y"), "/x/100%%/y");
    }
}
