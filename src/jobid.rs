//! Slurm job ids as evalctl records and compares them: a plain job (`123`)
//! or an element of a job array (`123_4`, which is how `squeue`, `sacct`,
//! `scancel` and `--dependency` name it; a pending element has no id of its
//! own). One type through state, refresh, plans and the remote programs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A job, or one element of a job array.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId {
    /// The job's id; for an array element, the array's.
    pub id: u64,
    /// The element's index in its array.
    pub index: Option<u32>,
}

impl JobId {
    pub const fn job(id: u64) -> JobId {
        JobId { id, index: None }
    }

    pub const fn element(array: u64, index: u32) -> JobId {
        JobId { id: array, index: Some(index) }
    }
}

/// Plain jobs by number.
pub fn jobs(ids: impl IntoIterator<Item = u64>) -> Vec<JobId> {
    ids.into_iter().map(JobId::job).collect()
}

impl From<u64> for JobId {
    fn from(id: u64) -> JobId {
        JobId::job(id)
    }
}

/// A plain job equals its number; an array element equals no number.
impl PartialEq<u64> for JobId {
    fn eq(&self, other: &u64) -> bool {
        self.index.is_none() && self.id == *other
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index {
            Some(i) => write!(f, "{}_{i}", self.id),
            None => write!(f, "{}", self.id),
        }
    }
}

impl FromStr for JobId {
    type Err = String;

    /// `123` or `123_4`; anything else (a pending array's `123_[4-9%2]`,
    /// spaces, signs) is not one job.
    fn from_str(s: &str) -> Result<JobId, String> {
        let digits = |t: &str| !t.is_empty() && t.len() <= 20 && t.bytes().all(|b| b.is_ascii_digit());
        let bad = || format!("`{s}` is not a Slurm job id");
        match s.split_once('_') {
            Some((a, i)) if digits(a) && digits(i) => {
                Ok(JobId::element(a.parse().map_err(|_| bad())?, i.parse().map_err(|_| bad())?))
            }
            None if digits(s) => Ok(JobId::job(s.parse().map_err(|_| bad())?)),
            _ => Err(bad()),
        }
    }
}

/// A plain job is a JSON number (as state files always had it), an array
/// element the string `"123_4"`.
impl Serialize for JobId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.index {
            None => s.serialize_u64(self.id),
            Some(_) => s.serialize_str(&self.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for JobId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<JobId, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Number(u64),
            Text(String),
        }
        match Either::deserialize(d)? {
            Either::Number(n) => Ok(JobId::job(n)),
            Either::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl crate::shell::Shell for JobId {
    /// Digits and `_` only: a shell word as it is.
    fn write_shell(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_json_round_trip() {
        for (text, id) in [("123", JobId::job(123)), ("123_4", JobId::element(123, 4)), ("0_0", JobId::element(0, 0))] {
            assert_eq!(text.parse::<JobId>().unwrap(), id);
            assert_eq!(id.to_string(), text);
            let json = serde_json::to_string(&id).unwrap();
            assert_eq!(serde_json::from_str::<JobId>(&json).unwrap(), id);
        }
        assert_eq!(serde_json::to_string(&JobId::job(7)).unwrap(), "7");
        assert_eq!(serde_json::to_string(&JobId::element(7, 2)).unwrap(), "\"7_2\"");
        assert_eq!(serde_json::from_str::<JobId>("\"7\"").unwrap(), JobId::job(7));
    }

    #[test]
    fn what_is_not_one_job_is_refused() {
        for bad in ["", "_", "12_", "_3", "12_[3-9%2]", "12_3_4", "-1", "1 2", "+3", "99999999999999999999999", "x"] {
            assert!(bad.parse::<JobId>().is_err(), "`{bad}` was read as a job id");
        }
        assert!(serde_json::from_str::<JobId>("\"12_x\"").is_err());
        assert!(serde_json::from_str::<JobId>("-3").is_err());
    }

    #[test]
    fn elements_sort_by_array_then_index() {
        let mut v = vec![JobId::element(5, 10), JobId::job(5), JobId::element(5, 2), JobId::job(4)];
        v.sort();
        assert_eq!(v, vec![JobId::job(4), JobId::job(5), JobId::element(5, 2), JobId::element(5, 10)]);
    }
}
