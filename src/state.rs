//! What `apply` recorded about a stack: per unit (a task's chain or a
//! deployment), the hashes of what was submitted, the job ids, the attempt
//! count and the state last observed.
//!
//! Kept as `<output_dir>/<stack>/.evalctl/state.json` on the cluster,
//! written atomically by the apply program, with a local copy beside the
//! config (`.evalctl/<stack>.state.json`) for `plan --offline`. Losing it
//! loses nothing: every job carries an ownership tag with its hashes, and
//! refresh finds the jobs again from Slurm.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Version of the state file format.
pub const STATE_VERSION: u32 = 1;

/// The recorded state of a stack.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    pub stack: String,
    /// Incremented by every apply.
    pub serial: u64,
    /// Unix time of the first apply (bounds the accounting query).
    #[serde(default)]
    pub created: u64,
    /// Digest of the job runtime the recorded scripts carried.
    #[serde(default)]
    pub runtime: String,
    /// The config that manages the stack: its path from the root of its
    /// repository (absolute outside one). Two configs may not share a stack.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub config: String,
    /// The applied config's values by key (values of variables as hashes),
    /// so that a plan can name the keys that changed since.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config_values: BTreeMap<String, String>,
    pub units: BTreeMap<String, UnitState>,
}

/// One unit: a task (its first link and resume link) or a deployment job.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitState {
    pub kind: UnitKind,
    pub script_hash: String,
    pub result_hash: String,
    /// The unit's scripts as submitted, with the shared runtime elided
    /// (for diffs), by file name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scripts: BTreeMap<String, std::sync::Arc<str>>,
    /// Job ids submitted by apply for the current attempt.
    #[serde(default)]
    pub jobs: Vec<crate::jobid::JobId>,
    /// Submissions of the current result (1 after the first).
    pub attempts: u32,
    /// What the last refresh saw.
    #[serde(default)]
    pub observed: Observed,
    /// Serial of the apply that last submitted the unit.
    #[serde(default)]
    pub serial: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitKind {
    #[default]
    Task,
    Deployment,
}

/// The state of a unit as seen on the cluster.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Observed {
    /// No job and no trace of one.
    #[default]
    Absent,
    /// Submitted and held by an apply that did not finish: never started.
    Held,
    Pending,
    Running,
    Completed,
    /// Ended without success: failed, cancelled, resume limits reached.
    Failed,
}

impl Observed {
    pub fn is_live(self) -> bool {
        matches!(self, Observed::Held | Observed::Pending | Observed::Running)
    }

    /// The state as one word (`pending`, ...).
    pub fn word(self) -> &'static str {
        match self {
            Observed::Absent => "absent",
            Observed::Held => "held",
            Observed::Pending => "pending",
            Observed::Running => "running",
            Observed::Completed => "completed",
            Observed::Failed => "failed",
        }
    }
}

impl State {
    pub fn new(stack: &str) -> State {
        State { version: STATE_VERSION, stack: stack.to_owned(), ..State::default() }
    }

    /// Parses a state file; an unknown version is an error, not a guess.
    pub fn parse(text: &str) -> Result<State, String> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("state file is not JSON: {e}"))?;
        match v.get("version").and_then(|x| x.as_u64()) {
            Some(n) if n == u64::from(STATE_VERSION) => {}
            Some(n) => {
                return Err(format!("state file version {n} is not supported (this evalctl reads {STATE_VERSION})"));
            }
            None => return Err("state file has no version".into()),
        }
        serde_json::from_value(v).map_err(|e| format!("state file is malformed: {e}"))
    }

    pub fn to_text(&self) -> String {
        serde_json::to_string_pretty(self).expect("plain data serializes") + "\n"
    }

    /// [`State::to_text`] with the `jobs` of some units left as a slot: the
    /// JSON string [`job_slot`]`(n)` in place of the list, for a program to
    /// fill with ids it learns on the cluster. Built by the serializer, so
    /// the rest of the text is exactly what `to_text` writes.
    pub fn to_text_with_job_slots(&self, slots: &BTreeMap<String, usize>) -> String {
        let mut v = serde_json::to_value(self).expect("plain data serializes");
        for (unit, n) in slots {
            if let Some(u) = v.get_mut("units").and_then(|u| u.get_mut(unit.as_str())).and_then(|u| u.as_object_mut()) {
                u.insert("jobs".into(), serde_json::Value::String(job_slot(*n)));
            }
        }
        serde_json::to_string_pretty(&v).expect("plain data serializes") + "\n"
    }
}

/// The slot token of [`State::to_text_with_job_slots`]: written as a JSON
/// string (`"@@J0@@"`), which no other string of the text can equal.
pub fn job_slot(n: usize) -> String {
    format!("@@J{n}@@")
}

/// How deep a unit's `jobs` list sits in [`State::to_text`]: its key is
/// indented by this many spaces, its items by two more.
pub const JOBS_INDENT: usize = 6;

/// The local copy of a stack's state, beside its config.
pub fn local_path(config: &Path, stack: &str) -> PathBuf {
    let dir = config.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    dir.join(".evalctl").join(format!("{stack}.state.json"))
}

/// Reads the local copy; `None` when there is none.
pub fn read_local(config: &Path, stack: &str) -> Result<Option<State>, String> {
    let path = local_path(config, stack);
    if std::fs::symlink_metadata(&path).is_err() {
        return Ok(None);
    }
    // A regular file only: a FIFO or device in its place must not hang a plan.
    match crate::config::files::read_regular(&path, 1 << 30) {
        Ok(t) => State::parse(&t).map(Some).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Writes the local copy atomically.
pub fn write_local(config: &Path, state: &State) -> Result<(), String> {
    let path = local_path(config, &state.stack);
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&tmp, state.to_text()).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &path).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_version_check() {
        let mut s = State::new("st");
        s.units.insert("a".into(), UnitState { script_hash: "x".into(), attempts: 1, ..Default::default() });
        assert_eq!(State::parse(&s.to_text()).unwrap(), s);
        assert!(State::parse("{\"version\": 9}").unwrap_err().contains("version 9"));
        assert!(State::parse("nope").is_err());
    }

    #[test]
    fn job_slots_come_from_the_serializer() {
        let mut s = State::new("st");
        s.units.insert("a \"b\"".into(), UnitState { jobs: vec![], attempts: 1, ..Default::default() });
        s.units.insert("c".into(), UnitState { jobs: crate::jobid::jobs([7]), ..Default::default() });
        let slots = BTreeMap::from([("a \"b\"".to_owned(), 0)]);
        let text = s.to_text_with_job_slots(&slots);
        let filled = text.replace("\"@@J0@@\"", &format!("[\n{i}  1,\n{i}  2\n{i}]", i = " ".repeat(JOBS_INDENT)));
        s.units.get_mut("a \"b\"").unwrap().jobs = crate::jobid::jobs([1, 2]);
        assert_eq!(filled, s.to_text());
        assert_eq!(s.to_text_with_job_slots(&BTreeMap::new()), s.to_text());
    }
}
