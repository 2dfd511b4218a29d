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
//!
//! A job that names a QOS is also charged to it: per user
//! (`MaxSubmitJobsPerUser`, `MaxJobsPerUser`) and for everyone
//! (`GrpSubmitJobs`, `GrpJobs`). The controller shows a user's usage of a
//! QOS (under its "User Limits", by uid) only once the user has jobs in it,
//! so the limits themselves come from `sacctmgr show qos`
//! ([`parse_qos_table`], one query, made only for the QOS a stack names)
//! and the usage from the same `scontrol` answer as the associations.

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
    /// The uid of a user record (`UserName=slurmuser(1001)`).
    pub uid: Option<String>,
}

/// One QOS's job limits, with the user's and everyone's usage.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Qos {
    pub name: String,
    /// `MaxSubmitJobsPerUser` with the user's queued jobs in the QOS.
    pub max_submit_jobs_per_user: Option<Limit>,
    /// `MaxJobsPerUser` with the user's running jobs in the QOS.
    pub max_jobs_per_user: Option<Limit>,
    pub grp_submit_jobs: Option<Limit>,
    pub grp_jobs: Option<Limit>,
    /// Time limit of one job, in minutes.
    pub max_wall_minutes: Option<u64>,
    /// The user's jobs in the QOS (queued, running) as the controller
    /// counted them, limit or not.
    pub user_usage: (u64, u64),
}

/// The association records and QOS of one answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Associations {
    pub records: Vec<Association>,
    /// By name: the QOS the controller reported usage for, merged with the
    /// limits `sacctmgr` gave ([`Associations::with_qos_table`]).
    pub qos: BTreeMap<String, Qos>,
}

impl Associations {
    /// Adds the limits of a `sacctmgr show qos` answer ([`parse_qos_table`])
    /// to the usage the controller reported. `sacctmgr`'s limits win: the
    /// controller leaves per-user limits out until the user has a job in
    /// the QOS.
    pub fn with_qos_table(mut self, table: Vec<Qos>) -> Associations {
        for limits in table {
            let known = self
                .qos
                .entry(limits.name.clone())
                .or_insert_with(|| Qos { name: limits.name.clone(), ..Qos::default() });
            let (queued, running) = known.user_usage;
            let with = |l: Option<Limit>, used: u64| l.map(|l| Limit { max: l.max, used });
            known.max_submit_jobs_per_user = with(limits.max_submit_jobs_per_user, queued);
            known.max_jobs_per_user = with(limits.max_jobs_per_user, running);
            // Everyone's usage is always in the controller's answer.
            let grp = |l: Option<Limit>, known: Option<Limit>| known.or(with(l, 0));
            known.grp_submit_jobs = grp(limits.grp_submit_jobs, known.grp_submit_jobs);
            known.grp_jobs = grp(limits.grp_jobs, known.grp_jobs);
            known.max_wall_minutes = limits.max_wall_minutes.or(known.max_wall_minutes);
        }
        self
    }

    /// The records a job of `user` under `account` (in `partition`, when
    /// a per-partition association exists for it) is charged to, from the
    /// user's own record up to the root. Empty when the user has no
    /// association under the account.
    pub fn chain(&self, user: &str, account: &str, partition: &str) -> Vec<&Association> {
        let default = self.records.iter().find(|a| a.user == user && a.default).map(|a| a.account.as_str());
        let account = if account.is_empty() { default.unwrap_or_default() } else { account };
        let own = |p: &str| self.records.iter().find(|a| a.user == user && a.account == account && a.partition == p);
        let Some(first) = own(partition).or_else(|| own("")) else { return vec![] };
        let mut chain = vec![first];
        let mut next = account.to_owned();
        // Accounts form a tree; the bound stops a malformed answer's cycle.
        for _ in 0..64 {
            let Some(record) =
                self.records.iter().find(|a| a.user.is_empty() && a.partition.is_empty() && a.account == next)
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

/// Reads the association records and QOS usage of `scontrol show
/// assoc_mgr users=USER flags=assoc,qos`. Fields it does not know are
/// skipped; a value it cannot read counts as no limit (the scheduler still
/// has the last word at submission).
pub fn parse(text: &str) -> Associations {
    let mut records = vec![];
    let mut current: Option<Association> = None;
    let mut qos: Vec<(Qos, Vec<String>)> = vec![];
    let mut in_qos = false;
    for line in text.lines() {
        if line.starts_with("ClusterName=") {
            records.extend(current.take());
            current = Some(Association::default());
            in_qos = false;
        } else if let Some(rest) = line.strip_prefix("QOS=") {
            records.extend(current.take());
            qos.push((Qos { name: name(rest), ..Qos::default() }, vec![]));
            in_qos = true;
            continue;
        }
        if in_qos {
            if let Some((_, lines)) = qos.last_mut() {
                lines.push(line.to_owned());
            }
            continue;
        }
        let Some(record) = current.as_mut() else { continue };
        for field in line.split_whitespace() {
            let Some((key, value)) = field.split_once('=') else { continue };
            match key {
                "Account" => record.account = value.to_owned(),
                "UserName" => {
                    record.user = name(value);
                    record.uid = value.split_once('(').and_then(|(_, id)| id.strip_suffix(')')).map(str::to_owned);
                }
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
    // The user's uid, which the QOS's "User Limits" are listed by.
    let uid = records.iter().find_map(|a| a.uid.clone());
    let qos = qos.into_iter().map(|(q, lines)| (q.name.clone(), qos_usage(q, &lines, uid.as_deref()))).collect();
    Associations { records, qos }
}

/// Fills in one QOS record's usage: everyone's (`GrpSubmitJobs=N(3)`) and,
/// from the block of the user's uid under "User Limits", the user's.
fn qos_usage(mut q: Qos, lines: &[String], uid: Option<&str>) -> Qos {
    let mut section = "";
    let mut ours = false;
    for line in lines {
        let trimmed = line.trim();
        match trimmed {
            "Account Limits" | "User Limits" => {
                section = trimmed;
                continue;
            }
            _ => {}
        }
        if section == "User Limits" && !trimmed.contains('=') {
            ours = uid.is_some_and(|uid| trimmed == uid);
            continue;
        }
        for field in trimmed.split_whitespace() {
            let Some((key, value)) = field.split_once('=') else { continue };
            match (section, key) {
                ("", "GrpSubmitJobs") => q.grp_submit_jobs = limit(value),
                ("", "GrpJobs") => q.grp_jobs = limit(value),
                ("", "MaxWallPJ") => q.max_wall_minutes = value.parse().ok(),
                ("User Limits", "MaxSubmitJobsPU") if ours => {
                    q.max_submit_jobs_per_user = limit(value);
                    q.user_usage.0 = usage(value);
                }
                ("User Limits", "MaxJobsPU") if ours => {
                    q.max_jobs_per_user = limit(value);
                    q.user_usage.1 = usage(value);
                }
                _ => {}
            }
        }
    }
    q
}

/// The usage of `30(3)` or `N(3)`: 3.
fn usage(value: &str) -> u64 {
    value.split_once('(').and_then(|(_, u)| u.strip_suffix(')')).and_then(|u| u.parse().ok()).unwrap_or(0)
}

/// Reads `sacctmgr -n -P show qos format=name,maxsubmitjobsperuser,
/// maxjobsperuser,maxwall,grpsubmitjobs,grpjobs` (no usage: 0 in use).
pub fn parse_qos_table(text: &str) -> Vec<Qos> {
    let number = |v: &str| v.parse().ok().map(|max| Limit { max, used: 0 });
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split('|').collect();
            let [name, submit, jobs, wall, grp_submit, grp_jobs, ..] = f.as_slice() else { return None };
            Some(Qos {
                name: (*name).to_owned(),
                max_submit_jobs_per_user: number(submit),
                max_jobs_per_user: number(jobs),
                grp_submit_jobs: number(grp_submit),
                grp_jobs: number(grp_jobs),
                max_wall_minutes: wall_minutes(wall),
                user_usage: (0, 0),
            })
        })
        .collect()
}

/// Slurm's time limit forms (`MM`, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM`,
/// `D-HH:MM:SS`) in whole minutes (seconds round up); empty or
/// `UNLIMITED`: none.
fn wall_minutes(value: &str) -> Option<u64> {
    let (days, rest) = match value.split_once('-') {
        Some((d, rest)) => (d.parse::<u64>().ok()?, rest),
        None => (0, value),
    };
    let parts: Vec<u64> = rest.split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let seconds = match (value.contains('-'), parts.as_slice()) {
        (false, [m]) => m * 60,
        (false, [m, s]) => m * 60 + s,
        (true, [h]) => h * 3600,
        (true, [h, m]) => h * 3600 + m * 60,
        (_, [h, m, s]) => h * 3600 + m * 60 + s,
        _ => return None,
    };
    Some(days * 1440 + seconds.div_ceil(60))
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

    const ASSOC: &str = include_str!("../../tests/fixtures/slurm/assoc_mgr.txt");

    #[test]
    fn reads_the_test_clusters_associations() {
        let a = parse(ASSOC);
        let chain = a.chain("slurmuser", "limited", "");
        let accounts: Vec<(&str, &str)> = chain.iter().map(|a| (a.account.as_str(), a.user.as_str())).collect();
        assert_eq!(accounts, [("limited", "slurmuser"), ("limited", ""), ("root", "")]);
        let own = chain[0];
        assert_eq!(own.max_submit_jobs, Some(Limit { max: 50, used: 3 }), "3 held jobs when the fixture was taken");
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
    fn qos_limits_come_from_sacctmgr_and_usage_from_the_controller() {
        let a = parse(ASSOC);
        let small = &a.qos["small"];
        assert_eq!(small.max_submit_jobs_per_user, Some(Limit { max: 30, used: 3 }));
        assert_eq!(small.user_usage, (3, 0));
        assert_eq!(small.max_wall_minutes, Some(60));
        assert_eq!(a.qos["normal"].user_usage, (0, 0), "no jobs in it: no user block");
        let table = parse_qos_table(include_str!("../../tests/fixtures/slurm/sacctmgr-qos.txt"));
        assert_eq!(table.len(), 2);
        let a = a.with_qos_table(table);
        let small = &a.qos["small"];
        assert_eq!(small.max_submit_jobs_per_user, Some(Limit { max: 30, used: 3 }));
        assert_eq!(small.max_jobs_per_user, Some(Limit { max: 10, used: 0 }));
        assert_eq!(small.grp_submit_jobs, None);
        assert_eq!(a.qos["normal"].max_submit_jobs_per_user, None);
        // A QOS the controller showed no usage for starts at 0 in use.
        let fresh = Associations::default().with_qos_table(parse_qos_table("q|5|2|1-00:00:00|7|\n"));
        assert_eq!(fresh.qos["q"].max_submit_jobs_per_user, Some(Limit { max: 5, used: 0 }));
        assert_eq!(fresh.qos["q"].grp_submit_jobs, Some(Limit { max: 7, used: 0 }));
        assert_eq!(fresh.qos["q"].max_wall_minutes, Some(1440));
    }

    #[test]
    fn slurm_time_limits_in_minutes() {
        assert_eq!(wall_minutes("01:00:00"), Some(60));
        assert_eq!(wall_minutes("90"), Some(90));
        assert_eq!(wall_minutes("5:30"), Some(6));
        assert_eq!(wall_minutes("2-12"), Some(2 * 1440 + 720));
        assert_eq!(wall_minutes("1-01:30"), Some(1440 + 90));
        assert_eq!(wall_minutes(""), None);
        assert_eq!(wall_minutes("UNLIMITED"), None);
        assert_eq!(wall_minutes("1:2:3:4"), None);
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
