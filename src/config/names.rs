//! The one grammar for every name that becomes a path, a job name or an
//! ownership tag: stack names, task ids (and task names used as ids),
//! auxiliary deployment names. 1 to 64 ASCII letters, digits, `.`, `_` or
//! `-`, starting with a letter or digit: no `/`, no `..`, no spaces,
//! quotes or markup, and short enough to fail early, at its line.

/// The longest name.
pub const MAX_NAME: usize = 64;

/// Whether `name` follows the grammar.
pub fn is_valid(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() <= MAX_NAME
        && chars.all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// Checks `name`; the error names `what` it is (`stack name`, `task id`).
pub fn check(what: &str, name: &str) -> Result<(), String> {
    if is_valid(name) {
        return Ok(());
    }
    let shown: String = name.chars().take(MAX_NAME + 1).collect::<String>().escape_debug().to_string();
    let shown = if name.chars().count() > MAX_NAME { format!("{shown}...") } else { shown };
    Err(format!(
        "{what} `{shown}` may only contain letters, digits, `.`, `_` and `-` (1 to {MAX_NAME} characters, starting with a letter or digit)"
    ))
}

/// Checks a name of the grammar's characters whose length is bounded
/// elsewhere (`execution.subproject`: by the job name it is part of).
pub fn check_part(what: &str, name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    if chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Ok(());
    }
    let shown: String = name.chars().take(MAX_NAME + 1).collect::<String>().escape_debug().to_string();
    let shown = if name.chars().count() > MAX_NAME { format!("{shown}...") } else { shown };
    Err(format!("{what} `{shown}` may only contain letters, digits, `.`, `_` and `-`, starting with a letter or digit"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grammar() {
        for ok in ["gsm8k", "lm-evaluation-harness.mmlu", "a", "t.1", "A_b-c"] {
            assert!(is_valid(ok), "{ok}");
        }
        let long = "a".repeat(65);
        for bad in ["", ".", "..", "../x", "a/b", ".hidden", "-x", "a b", "a'b", "a|b", "`x`", "é", long.as_str()] {
            assert!(!is_valid(bad), "{bad:?}");
        }
        assert!(check("task id", &"x".repeat(200)).unwrap_err().contains("..."));
        assert!(check_part("subproject", &"x".repeat(200)).is_ok(), "bounded by the job name instead");
        for bad in ["", "a b", "a:b", "a/b", "a@b", ".x", "a\"b"] {
            assert!(check_part("subproject", bad).is_err(), "{bad:?}");
        }
    }
}
