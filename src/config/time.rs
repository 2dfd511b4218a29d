//! Durations in a config: Slurm time limits (`walltime`, kept as written so
//! scripts show what the user wrote) and durations that may be given as
//! seconds or as a Slurm time, with Slurm's own reading of each form.

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// A Slurm time limit, kept as written (`02:00:00`) or as minutes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SlurmTime {
    Text(String),
    Minutes(u64),
}

/// Pattern of Slurm time strings accepted by `--time`.
pub const SLURM_TIME_PATTERN: &str = r"^([0-9]+-)?[0-9]+(:[0-9]{1,2}){0,2}$";

impl JsonSchema for SlurmTime {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SlurmTime".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Slurm time: `MM`, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM`, `D-HH:MM:SS`, or minutes as an integer.",
            "anyOf": [
                { "type": "string", "pattern": SLURM_TIME_PATTERN },
                { "type": "integer", "minimum": 0 }
            ]
        })
    }
}

/// A duration: seconds, or a Slurm time string.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Duration {
    Seconds(u64),
    Text(String),
}

impl JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Seconds as an integer, or a Slurm time string (`HH:MM:SS`).",
            "anyOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": SLURM_TIME_PATTERN }
            ]
        })
    }
}

impl Default for SlurmTime {
    fn default() -> SlurmTime {
        super::model::default_walltime()
    }
}

impl SlurmTime {
    /// Length in seconds, with Slurm's reading of each form: `M`, `M:S`,
    /// `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S` (hours may exceed 24 without days).
    pub fn seconds(&self) -> Result<u64, TimeError> {
        match self {
            SlurmTime::Minutes(m) => within_slurm(Some(*m).and_then(|m| m.checked_mul(60)), &m.to_string()),
            SlurmTime::Text(t) => slurm_time_seconds(t),
        }
    }
}

impl Duration {
    /// Length in seconds: an integer as it is, text as a Slurm time; at
    /// most the longest time Slurm can hold.
    pub fn seconds(&self) -> Result<u64, TimeError> {
        match self {
            Duration::Seconds(s) => within_slurm(Some(*s), &s.to_string()),
            Duration::Text(t) => slurm_time_seconds(t),
        }
    }
}

/// Seconds of a Slurm time string (see [`SlurmTime::seconds`]).
fn slurm_time_seconds(text: &str) -> Result<u64, TimeError> {
    let text = text.trim();
    let bad =
        || TimeError::Format(format!("`{text}` is not a Slurm time (use HH:MM:SS, D-HH:MM:SS, MM:SS or minutes)"));
    let num = |s: &str| s.parse::<u64>().map_err(|_| bad());
    let (days, rest) = match text.split_once('-') {
        Some((d, r)) => (Some(num(d)?), r),
        None => (None, text),
    };
    let parts: Vec<u64> = rest.split(':').map(num).collect::<Result<_, _>>()?;
    let (h, m, s) = match (days.is_some(), parts.as_slice()) {
        (false, [m]) => (0, *m, 0),
        (false, [m, s]) => (0, *m, *s),
        (false, [h, m, s]) => (*h, *m, *s),
        (true, [h]) => (*h, 0, 0),
        (true, [h, m]) => (*h, *m, 0),
        (true, [h, m, s]) => (*h, *m, *s),
        _ => return Err(bad()),
    };
    let single_minutes = days.is_none() && parts.len() <= 2;
    if s >= 60 || (!single_minutes && m >= 60) || (days.is_some() && h >= 24) {
        return Err(TimeError::Range(format!(
            "`{text}` is not a valid time: minutes and seconds must be below 60, hours below 24 after a day count"
        )));
    }
    let total = days
        .unwrap_or(0)
        .checked_mul(86_400)
        .and_then(|d| d.checked_add(h.checked_mul(3600)?))
        .and_then(|t| t.checked_add(m.checked_mul(60)?))
        .and_then(|t| t.checked_add(s));
    within_slurm(total, text)
}

/// The longest time Slurm can hold: a 32-bit count of minutes.
const SLURM_MAX_SECONDS: u64 = u32::MAX as u64 * 60;

/// `seconds` when Slurm can express it (no overflow, at most
/// [`SLURM_MAX_SECONDS`]); a range error naming `text` otherwise.
fn within_slurm(seconds: Option<u64>, text: &str) -> Result<u64, TimeError> {
    match seconds {
        Some(s) if s <= SLURM_MAX_SECONDS => Ok(s),
        _ => Err(TimeError::Range(format!("`{text}` is longer than any time limit Slurm can hold"))),
    }
}

/// Why a time string is not a Slurm time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimeError {
    /// Not of any Slurm form (the schema's pattern reports these).
    Format(String),
    /// Of a Slurm form, with a field out of range (`10:75:00`).
    Range(String),
}

impl std::fmt::Display for TimeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TimeError::Format(m) | TimeError::Range(m) => f.write_str(m),
        }
    }
}
