//! Scheduler limits: how many jobs, GPUs and minutes the user's
//! association allows, and how much of that is in use, read from the
//! controller's own view (`scontrol show assoc_mgr users=USER flags=assoc`,
//! ~15 ms, where `sacctmgr` costs ~0.3 s a query and knows no usage).
//!
//! A job is charged to its association (account, user, optionally a
//! partition) and to every account above it. Each level may cap the jobs a
//! user has queued (`MaxSubmitJobs`, `GrpSubmitJobs` for the account's
//! whole subtree), running (`MaxJobs`, `GrpJobs`), the TRES in use
//! (`GrpTRES`, e.g. `gres/gpu=4`) and the time limit of one job
//! (`MaxWallPJ`, minutes). The controller prints each as `LIMIT(USED)`,
//! `N` for no limit. [`parse`] reads the records; [`Associations::chain`]
//! walks from a user's association up to the root, which is where the
//! room a stack has left is decided.

use std::collections::BTreeMap;

/// A limit and what is in use against it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    pub max: u64,
    pub used: u64,
}

impl Limit {
    /// What is left (never negative).
    pub fn room(&self) -> u64 {
        self.max.saturating_sub(self.used)
    }
}

/// One association record of the controller.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Association {
    pub account: String,
    /// Empty for an account's own record.
    pub user: String,
    /// Empty unless the association is per partition.
    pub partition: String,
    /// The user's default association (`DefAssoc=Yes`): where a job that
    /// names no account goes.
    pub default: bool,
    /// The parent account of an account record (empty for the root and for
    /// user records, whose parent is their account's record).
    pub parent: String,
    pub max_submit_jobs: Option<Limit>,
    pub max_jobs: Option<Limit>,
    pub grp_submit_jobs: Option<Limit>,
    pub grp_jobs: Option<Limit>,
    /// `GrpTRES` entries that have a limit, by TRES name (`gres/gpu`, `cpu`).
    pub grp_tres: BTreeMap<String, Limit>,
    /// Time limit of one job, in minutes.
    pub max_wall_minutes: Option<u64>,
}

/// The association records of one answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Associations(pub Vec<Association>);

impl Associations {
    /// The records a job of `user` under `account` (in `partition`, when
    /// a per-partition association exists for it) is charged to, from the
    /// user's own record up to the root. Empty when the user has no
    /// association under the account.
    pub fn chain(&self, user: &str, account: &str, partition: &str) -> Vec<&Association> {
        let default = self.0.iter().find(|a| a.user == user && a.default).map(|a| a.account.as_str());
        let account = if account.is_empty() { default.unwrap_or_default() } else { account };
        let own = |p: &str| self.0.iter().find(|a| a.user == user && a.account == account && a.partition == p);
        let Some(first) = own(partition).or_else(|| own("")) else { return vec![] };
        let mut chain = vec![first];
        let mut next = account.to_owned();
        // Accounts form a tree; the bound stops a malformed answer's cycle.
        for _ in 0..64 {
            let Some(record) = self.0.iter().find(|a| a.user.is_empty() && a.partition.is_empty() && a.account == next)
            else {
                break;
            };
            chain.push(record);
            if record.parent.is_empty() {
                break;
            }
            next = record.parent.clone();
        }
        chain
    }
}

/// Reads the association records of `scontrol show assoc_mgr flags=assoc`.
/// Fields it does not know are skipped; a value it cannot read counts as
/// no limit (the scheduler still has the last word at submission).
pub fn parse(text: &str) -> Associations {
    let mut records = vec![];
    let mut current: Option<Association> = None;
    for line in text.lines() {
        if line.starts_with("ClusterName=") {
            records.extend(current.take());
            current = Some(Association::default());
        }
        let Some(record) = current.as_mut() else { continue };
        for field in line.split_whitespace() {
            let Some((key, value)) = field.split_once('=') else { continue };
            match key {
                "Account" => record.account = value.to_owned(),
                "UserName" => record.user = name(value),
                "Partition" => record.partition = value.to_owned(),
                "ParentAccount" => record.parent = name(value),
                "MaxSubmitJobs" => record.max_submit_jobs = limit(value),
                "MaxJobs" => record.max_jobs = limit(value),
                "GrpSubmitJobs" => record.grp_submit_jobs = limit(value),
                "GrpJobs" => record.grp_jobs = limit(value),
                "GrpTRES" => record.grp_tres = tres(value),
                "MaxWallPJ" => record.max_wall_minutes = value.parse().ok(),
                "DefAssoc" => record.default = value == "Yes",
                _ => {}
            }
        }
    }
    records.extend(current);
    Associations(records)
}

/// `slurmuser(1001)` → `slurmuser`; `root(1)` → `root`.
fn name(value: &str) -> String {
    value.split('(').next().unwrap_or_default().to_owned()
}

/// `50(12)` → 50 with 12 used; `N(0)`, `` → no limit.
fn limit(value: &str) -> Option<Limit> {
    let (max, rest) = value.split_once('(')?;
    let used = rest.strip_suffix(')')?;
    Some(Limit { max: max.parse().ok()?, used: used.parse().unwrap_or(0) })
}

/// `cpu=N(0),gres/gpu=4(1)` → {gres/gpu: 4 with 1 used}.
fn tres(value: &str) -> BTreeMap<String, Limit> {
    value
        .split(',')
        .filter_map(|entry| {
            let (name, value) = entry.split_once('=')?;
            Some((name.to_owned(), limit(value)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ASSOC: &str = include_str!("../../tests/fixtures/slurm/assoc_mgr-assoc.txt");

    #[test]
    fn reads_the_test_clusters_associations() {
        let a = parse(ASSOC);
        let chain = a.chain("slurmuser", "limited", "");
        let accounts: Vec<(&str, &str)> = chain.iter().map(|a| (a.account.as_str(), a.user.as_str())).collect();
        assert_eq!(accounts, [("limited", "slurmuser"), ("limited", ""), ("root", "")]);
        let own = chain[0];
        assert_eq!(own.max_submit_jobs, Some(Limit { max: 50, used: 0 }));
        assert_eq!(own.max_jobs, Some(Limit { max: 20, used: 0 }));
        assert_eq!(own.grp_tres.get("gres/gpu"), Some(&Limit { max: 4, used: 0 }));
        assert_eq!(own.grp_tres.len(), 1, "entries without a limit are left out");
        assert_eq!(own.max_wall_minutes, Some(120));
        assert_eq!(chain[1].max_submit_jobs, None);
        assert_eq!(a.chain("slurmuser", "research", "")[0].max_submit_jobs, None);
        assert!(a.chain("slurmuser", "nope", "").is_empty());
        assert!(a.chain("someone", "limited", "").is_empty());
        assert_eq!(a.chain("slurmuser", "", "")[0].account, "default", "no account: the default association");
    }

    #[test]
    fn limits_with_usage() {
        assert_eq!(limit("50(12)"), Some(Limit { max: 50, used: 12 }));
        assert_eq!(limit("50(12)").map(|l| l.room()), Some(38));
        assert_eq!(limit("5(9)").map(|l| l.room()), Some(0));
        assert_eq!(limit("N(3)"), None);
        assert_eq!(limit(""), None);
        assert_eq!(limit("12"), None);
    }

    #[test]
    fn a_cycle_in_the_answer_ends() {
        let text = "ClusterName=c Account=a UserName=u(1) Partition= ID=1\n    ParentAccount=\n\
                    ClusterName=c Account=a UserName= Partition= ID=2\n    ParentAccount=b(3)\n\
                    ClusterName=c Account=b UserName= Partition= ID=3\n    ParentAccount=a(2)\n";
        assert_eq!(parse(text).chain("u", "a", "").len(), 65);
    }
}
