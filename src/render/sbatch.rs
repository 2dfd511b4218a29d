//! `#SBATCH` header lines. sbatch, not bash, reads them, with its own rules
//! (an unquoted `#` starts a comment, a quote cannot be escaped), so a value
//! reaches a header only as an [`SbatchValue`], checked when it is made, and
//! a flag name only as a [`FlagName`]. [`SbatchHeader`] spells the lines.

use std::fmt;
use std::fmt::Write as _;

use super::shell::sbatch_value;

/// A value sbatch reads back as it was given, in its written form (plain,
/// or double-quoted when it has characters sbatch would split on).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SbatchValue(String);

impl SbatchValue {
    /// The value, or why an `#SBATCH` line cannot carry it.
    pub fn new(value: &str) -> Result<SbatchValue, String> {
        sbatch_value(value).map(SbatchValue)
    }
}

impl From<u32> for SbatchValue {
    fn from(n: u32) -> SbatchValue {
        SbatchValue(n.to_string())
    }
}

impl From<u64> for SbatchValue {
    fn from(n: u64) -> SbatchValue {
        SbatchValue(n.to_string())
    }
}

impl fmt::Display for SbatchValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The name of an sbatch option, without its dashes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlagName(String);

impl FlagName {
    /// A flag of the user's (`sbatch_extra_flags`): a letter, then letters,
    /// digits, `-` and `_` (written as `-`); the dashes are evalctl's.
    pub fn user(name: &str) -> Result<FlagName, String> {
        let mut chars = name.chars();
        if !chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            || !chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!("`{}` is not an sbatch flag name", name.escape_debug()));
        }
        Ok(FlagName(name.replace('_', "-")))
    }
}

impl From<&'static str> for FlagName {
    fn from(name: &'static str) -> FlagName {
        FlagName(name.to_owned())
    }
}

impl fmt::Display for FlagName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `#SBATCH` lines, in the order they are pushed.
#[derive(Clone, Debug, Default)]
pub struct SbatchHeader {
    text: String,
}

impl SbatchHeader {
    pub fn new() -> SbatchHeader {
        SbatchHeader::default()
    }

    /// Lines appended to `text` (what [`Self::finish`] returns then starts with it).
    pub fn after(text: String) -> SbatchHeader {
        SbatchHeader { text }
    }

    /// `#SBATCH --flag=value`.
    pub fn push(&mut self, flag: impl Into<FlagName>, value: impl Into<SbatchValue>) -> &mut Self {
        let _ = writeln!(self.text, "#SBATCH --{}={}", flag.into(), value.into());
        self
    }

    /// `#SBATCH --flag=value` when there is a value.
    pub fn push_some(&mut self, flag: impl Into<FlagName>, value: Option<impl Into<SbatchValue>>) -> &mut Self {
        if let Some(v) = value {
            self.push(flag, v);
        }
        self
    }

    /// `#SBATCH --flag`, a switch without a value.
    pub fn switch(&mut self, flag: impl Into<FlagName>) -> &mut Self {
        let _ = writeln!(self.text, "#SBATCH --{}", flag.into());
        self
    }

    /// The lines, each ending in a newline.
    pub fn finish(self) -> String {
        self.text
    }
}

impl From<&SbatchValue> for SbatchValue {
    fn from(v: &SbatchValue) -> SbatchValue {
        v.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_checked_values_only() {
        let mut h = SbatchHeader::new();
        h.push("account", SbatchValue::new("acct #1").unwrap()).push("nodes", 2u32).switch("no-requeue");
        h.push_some("qos", None::<SbatchValue>);
        assert_eq!(h.finish(), "#SBATCH --account=\"acct #1\"\n#SBATCH --nodes=2\n#SBATCH --no-requeue\n");
        assert!(SbatchValue::new("a\"b").is_err());
        assert_eq!(FlagName::user("mail_type").unwrap().to_string(), "mail-type");
        assert!(FlagName::user("x y").is_err());
        assert!(FlagName::user("").is_err());
        assert!(FlagName::user("-wrap").is_err() && FlagName::user("_x").is_err() && FlagName::user("9x").is_err());
    }
}
