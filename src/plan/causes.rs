//! Causes: the config keys that changed since the last apply, each with its
//! old and new value, where the new value was written (the config, a
//! defaults group file, or an `-o` override) and the units it affects. A
//! reviewer reads these before any script diff: one changed key explains
//! eighty changed scripts.
//!
//! Apply records the composed config's values in the state
//! ([`crate::state::State::config_values`]); the plan compares them with
//! the config as it is now. Values of variables (`env_vars`, anything that
//! names a key, token, secret or password) are recorded and shown only as a
//! hash: a plan never prints what may be a secret.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::node::{Node, Value};
use crate::diag::Sources;

/// A value of the config as it is now, and where it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigValue {
    /// The value as the state records it (JSON text, or a hash).
    pub value: String,
    /// `file:line:col`.
    pub at: String,
}

/// One changed key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cause {
    /// `execution.walltime`, `evaluation.tasks[gsm8k].nemo_evaluator_config.config.params.limit_samples`.
    pub key: String,
    /// None when the key is new.
    pub old: Option<String>,
    /// None when the key was removed.
    pub new: Option<String>,
    /// Where the new value is written (none for a removed key).
    pub at: Option<String>,
    /// Units the change touches (that the plan changes).
    pub units: Vec<String>,
}

/// Every leaf of the composed config by key, values of variables hashed.
pub fn values(tree: &Node, sources: &Sources) -> BTreeMap<String, ConfigValue> {
    let mut out = BTreeMap::new();
    walk(tree, String::new(), false, sources, &mut out);
    out
}

/// The recorded form of [`values`] (what the state keeps).
pub fn recorded(values: &BTreeMap<String, ConfigValue>) -> BTreeMap<String, String> {
    values.iter().map(|(k, v)| (k.clone(), v.value.clone())).collect()
}

fn hidden(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k == "env_vars" || ["token", "secret", "password", "api_key", "apikey", "credential"].iter().any(|s| k.contains(s))
}

fn walk(node: &Node, path: String, hide: bool, sources: &Sources, out: &mut BTreeMap<String, ConfigValue>) {
    match &node.value {
        Value::Map(m) => {
            for (k, e) in m {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                walk(&e.node, p, hide || hidden(k), sources, out);
            }
        }
        Value::Seq(items) => {
            // Items named by their `id` or `name` when those are unique, so
            // that reordering a list is not a change of every item.
            for (item, label) in items.iter().zip(item_labels(items)) {
                walk(item, format!("{path}[{label}]"), hide, sources, out);
            }
            if items.is_empty() {
                out.insert(path, ConfigValue { value: "[]".into(), at: sources.location(node.span) });
            }
        }
        leaf => {
            let text = match leaf {
                Value::Null => "null".to_owned(),
                Value::Bool(b) => b.to_string(),
                Value::Int(i) => i.to_string(),
                Value::Float(f) => f.to_string(),
                Value::Str(s) | Value::Deferred(s) => serde_json::to_string(s).unwrap_or_default(),
                Value::Missing => "???".to_owned(),
                Value::Map(_) | Value::Seq(_) => unreachable!("handled above"),
            };
            let value = if hide {
                let h = Sha256::digest(text.as_bytes());
                format!("hidden:{}", &crate::render::hex(&h)[..16])
            } else {
                text
            };
            out.insert(path, ConfigValue { value, at: sources.location(node.span) });
        }
    }
}

/// How the items of a list are named in keys: by their `id` or `name`
/// when every item has one and they are unique, else by position.
pub fn item_labels(items: &[Node]) -> Vec<String> {
    let names: Vec<Option<&str>> = items.iter().map(item_name).collect();
    let unique = names.iter().flatten().count() == items.len()
        && names.iter().collect::<std::collections::BTreeSet<_>>().len() == items.len();
    (0..items.len()).map(|i| if unique { names[i].unwrap_or_default().to_owned() } else { i.to_string() }).collect()
}

fn item_name(n: &Node) -> Option<&str> {
    let m = n.as_map()?;
    m.get("id").or_else(|| m.get("name")).and_then(|e| e.node.as_str())
}

/// The keys whose values differ between the recorded config and this one.
/// `task_unit` maps a key to the unit of the task it belongs to (keys under
/// `evaluation.tasks[...]`); any other key touches every changed unit.
pub fn causes(
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, ConfigValue>,
    task_unit: &dyn Fn(&str) -> Option<String>,
    changed: &[String],
) -> Vec<Cause> {
    let keys: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let mut out = vec![];
    for key in keys {
        let (o, n) = (old.get(key), new.get(key));
        if o == n.map(|v| &v.value) {
            continue;
        }
        let units = match task_unit(key) {
            Some(u) => changed.iter().filter(|c| **c == u).cloned().collect(),
            None => changed.to_vec(),
        };
        out.push(Cause {
            key: key.clone(),
            old: o.map(|v| shown(v)),
            new: n.map(|v| shown(&v.value)),
            at: n.map(|v| v.at.clone()),
            units,
        });
    }
    out
}

fn shown(v: &str) -> String {
    if v.starts_with("hidden:") {
        return "(hidden)".into();
    }
    if v.chars().count() > 120 { format!("{}…", v.chars().take(120).collect::<String>()) } else { v.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml;

    fn vals(text: &str) -> BTreeMap<String, ConfigValue> {
        let sources = Sources::new();
        let id = sources.add("c.yaml", text);
        values(&yaml::parse(text, id).unwrap(), &sources)
    }

    #[test]
    fn leaves_by_key_with_places_and_named_items() {
        let v = vals(
            "execution: {walltime: \"01:00:00\", env_vars: {HF_TOKEN: abc}}\nevaluation:\n  tasks:\n    - {name: gsm8k, x: 1}\n    - {name: mmlu}\nlist: [1, 1]\n",
        );
        assert_eq!(v["execution.walltime"], ConfigValue { value: "\"01:00:00\"".into(), at: "c.yaml:1:23".into() });
        assert!(v["execution.env_vars.HF_TOKEN"].value.starts_with("hidden:"), "{v:?}");
        assert_eq!(v["evaluation.tasks[gsm8k].x"].value, "1");
        assert_eq!(v["list[1]"].value, "1");
    }

    #[test]
    fn changed_keys_name_their_units_and_hide_secrets() {
        let old = recorded(&vals(
            "execution: {walltime: \"01:00:00\", api_key: a}\nevaluation: {tasks: [{name: t0, l: 1}, {name: t1}]}\n",
        ));
        let new = vals(
            "execution: {walltime: \"02:00:00\", api_key: b}\nevaluation: {tasks: [{name: t0, l: 2}, {name: t1}]}\n",
        );
        let task = |k: &str| k.strip_prefix("evaluation.tasks[").and_then(|r| r.split(']').next()).map(str::to_owned);
        let changed = vec!["t0".to_owned(), "t1".to_owned()];
        let c = causes(&old, &new, &task, &changed);
        type Row<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Vec<String>);
        let keys: Vec<Row> =
            c.iter().map(|c| (c.key.as_str(), c.old.as_deref(), c.new.as_deref(), c.units.clone())).collect();
        assert_eq!(
            keys,
            [
                ("evaluation.tasks[t0].l", Some("1"), Some("2"), vec!["t0".to_owned()]),
                ("execution.api_key", Some("(hidden)"), Some("(hidden)"), changed.clone()),
                ("execution.walltime", Some("\"01:00:00\""), Some("\"02:00:00\""), changed.clone()),
            ]
        );
        assert_eq!(c[2].at.as_deref(), Some("c.yaml:1:23"));
    }
}
