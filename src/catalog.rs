//! The task catalog: which harness and container image run a task name.
//!
//! Built from `data/tasks.tsv` (the 421 tasks launcher 0.2.6 knows: harness,
//! task, type, endpoint types, container) compiled into the binary, plus
//! `data/legacy_tasks.tsv`, the bare names older launcher configs use that
//! are ambiguous or gone in the current catalog.

use std::collections::HashMap;
use std::sync::OnceLock;

const TASKS_TSV: &str = include_str!("../data/tasks.tsv");
const LEGACY_TSV: &str = include_str!("../data/legacy_tasks.tsv");

/// One evaluation task of the catalog.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TaskInfo {
    pub harness: String,
    pub name: String,
    #[serde(rename = "type")]
    pub task_type: String,
    pub endpoint_types: Vec<String>,
    pub container: String,
}

impl TaskInfo {
    /// `harness.task`, the unambiguous spelling.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.harness, self.name)
    }
}

/// How a task name in a config was resolved.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolution<'a> {
    /// Exactly one task has this (bare or qualified) name.
    Found(&'a TaskInfo),
    /// A bare name of launcher 0.1.x configs, resolved to what it meant there;
    /// `choices` are the current catalog's tasks of that name (maybe none).
    Legacy { task: &'a TaskInfo, choices: Vec<&'a TaskInfo> },
    /// Several harnesses have a task of this name.
    Ambiguous(Vec<&'a TaskInfo>),
    /// No task of this name; close names, best first.
    Unknown(Vec<String>),
}

#[derive(Debug)]
pub struct Catalog {
    tasks: Vec<TaskInfo>,
    legacy: Vec<(String, TaskInfo)>,
    /// Index of every task by `harness.task`.
    by_qualified: HashMap<String, usize>,
    /// Indices of the tasks of each bare name, in catalog order.
    by_name: HashMap<String, Vec<usize>>,
}

/// The built-in catalog, parsed once.
pub fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| Catalog::parse(TASKS_TSV, LEGACY_TSV))
}

fn rows(tsv: &str) -> impl Iterator<Item = Vec<&str>> {
    tsv.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')).map(|l| l.split('\t').collect::<Vec<_>>())
}

impl Catalog {
    /// Parses the two data files. Malformed rows are a build defect, caught
    /// by the unit tests, and are skipped rather than panicking.
    pub fn parse(tasks_tsv: &str, legacy_tsv: &str) -> Catalog {
        let tasks: Vec<TaskInfo> = rows(tasks_tsv)
            .filter(|r| r.len() == 5 && r[0] != "harness")
            .map(|r| TaskInfo {
                harness: r[0].to_owned(),
                name: r[1].to_owned(),
                task_type: r[2].to_owned(),
                endpoint_types: r[3].split(',').map(|s| s.trim().to_owned()).collect(),
                container: r[4].to_owned(),
            })
            .collect();
        let legacy = rows(legacy_tsv)
            .filter(|r| r.len() == 4)
            .filter_map(|r| {
                let current = tasks.iter().find(|t| t.harness == r[1] && t.name == r[2]).cloned();
                let container = tasks.iter().find(|t| t.harness == r[1]).map(|t| t.container.clone())?;
                let task = current.unwrap_or_else(|| TaskInfo {
                    harness: r[1].to_owned(),
                    name: r[2].to_owned(),
                    task_type: r[2].to_owned(),
                    endpoint_types: r[3].split(',').map(|s| s.trim().to_owned()).collect(),
                    container,
                });
                Some((r[0].to_owned(), task))
            })
            .collect();
        let by_qualified = tasks.iter().enumerate().map(|(i, t)| (t.qualified(), i)).collect();
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, t) in tasks.iter().enumerate() {
            by_name.entry(t.name.clone()).or_default().push(i);
        }
        Catalog { tasks, legacy, by_qualified, by_name }
    }

    pub fn tasks(&self) -> &[TaskInfo] {
        &self.tasks
    }

    /// Resolves a task name as written in a config: `harness.task` or a bare
    /// task name.
    pub fn resolve(&self, name: &str) -> Resolution<'_> {
        if let Some(&i) = self.by_qualified.get(name) {
            return Resolution::Found(&self.tasks[i]);
        }
        let matches: Vec<&TaskInfo> =
            self.by_name.get(name).map(|ix| ix.iter().map(|&i| &self.tasks[i]).collect()).unwrap_or_default();
        if matches.len() == 1 {
            return Resolution::Found(matches[0]);
        }
        if let Some((_, task)) = self.legacy.iter().find(|(n, _)| n == name) {
            return Resolution::Legacy { task, choices: matches };
        }
        if matches.len() > 1 {
            return Resolution::Ambiguous(matches);
        }
        Resolution::Unknown(self.suggest(name))
    }

    /// Up to three known names close to `name`.
    pub fn suggest(&self, name: &str) -> Vec<String> {
        let bare = name.rsplit_once('.').map_or(name, |(_, t)| t);
        let mut scored: Vec<(f64, String)> = self
            .tasks
            .iter()
            .map(|t| (strsim::jaro_winkler(bare, &t.name), t.name.clone()))
            .filter(|(s, _)| *s > 0.85)
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        scored.dedup_by(|a, b| a.1 == b.1);
        scored.into_iter().take(3).map(|(_, n)| n).collect()
    }

    /// Tasks whose qualified name contains `pattern` (case-insensitive);
    /// `*` matches any run of characters.
    pub fn search(&self, pattern: Option<&str>) -> Vec<&TaskInfo> {
        let Some(p) = pattern else {
            return self.tasks.iter().collect();
        };
        let p = p.to_lowercase();
        self.tasks.iter().filter(|t| glob_contains(&p, &t.qualified().to_lowercase())).collect()
    }
}

/// Substring match where `*` in the pattern matches any run of characters.
fn glob_contains(pattern: &str, text: &str) -> bool {
    let mut pos = 0;
    for part in pattern.split('*').filter(|s| !s.is_empty()) {
        match text[pos..].find(part) {
            Some(i) => pos += i + part.len(),
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_catalog_has_all_tasks() {
        assert_eq!(catalog().tasks().len(), 421);
    }

    #[test]
    fn resolves_bare_qualified_ambiguous_and_legacy() {
        let c = catalog();
        match c.resolve("hellaswag") {
            Resolution::Found(t) => assert_eq!(t.harness, "lm-evaluation-harness"),
            r => panic!("{r:?}"),
        }
        match c.resolve("simple_evals.mmlu") {
            Resolution::Found(t) => assert_eq!(t.endpoint_types, vec!["chat"]),
            r => panic!("{r:?}"),
        }
        match c.resolve("mmlu") {
            Resolution::Ambiguous(v) => {
                let names: Vec<_> = v.iter().map(|t| t.qualified()).collect();
                assert_eq!(names, vec!["lm-evaluation-harness.mmlu", "simple_evals.mmlu"]);
            }
            r => panic!("{r:?}"),
        }
        match c.resolve("ifeval") {
            Resolution::Legacy { task, choices } => {
                assert_eq!(task.qualified(), "lm-evaluation-harness.ifeval");
                assert_eq!(choices.len(), 2);
            }
            r => panic!("{r:?}"),
        }
        match c.resolve("mbpp") {
            Resolution::Legacy { task, choices } => {
                assert_eq!(task.container, "nvcr.io/nvidia/eval-factory/bigcode-evaluation-harness:26.03");
                assert!(choices.is_empty());
            }
            r => panic!("{r:?}"),
        }
        assert_eq!(
            c.resolve("hellaswagg"),
            Resolution::Unknown(vec!["hellaswag".into(), "hellaswag_test".into(), "hellaswag_train".into()])
        );
    }

    #[test]
    fn search_patterns() {
        let c = catalog();
        assert!(c.search(Some("gsm8k")).iter().all(|t| t.qualified().contains("gsm8k")));
        assert_eq!(c.search(Some("simple_evals.aime*2025")).len(), 3);
        assert_eq!(c.search(None).len(), 421);
    }
}
