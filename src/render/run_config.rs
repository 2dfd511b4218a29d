//! The harness's run config of a task and the endpoint it calls: pure
//! functions of the config and the resolved task, so they are tested (and
//! hashed into the result identity) apart from any script text.

use serde_json::{Value as J, json};

use crate::config::ResolvedTask;
use crate::config::env::EnvVar;
use crate::config::model::{Config, DeploymentType, Task};

/// Placeholder in a task's run config for the endpoint URL known only when
/// the job runs: the whole JSON string at `target.api_endpoint.url`. When a
/// value of the config contains this text, a numbered variant that none
/// contains is used instead (see [`url_placeholder`]), so the job replaces
/// the URL and nothing else.
pub const URL_PLACEHOLDER: &str = "@@EVALCTL_ENDPOINT_URL@@";

/// The version of nemo-evaluator (the harness's run-config models) the run
/// config is written for: the one nemo-evaluator-launcher 0.2.6 installs.
/// `tests/harness_models.rs` validates rendered run configs with it.
pub const HARNESS_VERSION: &str = "0.2.8";

/// The endpoint types the harness accepts at `target.api_endpoint.type`
/// (its `EndpointType`; `vlm`, which the launcher's task catalog still
/// uses, it reads as `chat`).
pub const HARNESS_ENDPOINT_TYPES: &[&str] = &["chat", "completions", "completions_logprob", "embedding", "vlm"];

/// The placeholder a run config made by [`run_config`] holds for its URL.
pub fn url_placeholder(run_config: &J) -> &str {
    run_config["target"]["api_endpoint"]["url"].as_str().unwrap_or(URL_PLACEHOLDER)
}

/// The endpoint type of a task and the URL path (with a deployment) or
/// full URL (without one) it calls.
pub fn endpoint_for(cfg: &Config, rt: &ResolvedTask, task: &Task) -> (String, String) {
    let deployed = cfg.deployment.kind != DeploymentType::None;
    let url = cfg.target.api_endpoint.url.clone().unwrap_or_default();
    let from_url = if url.ends_with("/chat/completions") {
        Some("chat")
    } else if url.ends_with("/completions") {
        Some("completions")
    } else {
        None
    };
    let types = &rt.info.endpoint_types;
    let kind = task
        .endpoint_type
        .clone()
        .or_else(|| cfg.target.api_endpoint.kind.clone())
        .or_else(|| if deployed { None } else { from_url.map(str::to_owned) })
        .unwrap_or_else(|| {
            if types.iter().any(|t| t == "chat") {
                "chat".into()
            } else {
                types.first().cloned().unwrap_or_else(|| "chat".into())
            }
        });
    if !deployed {
        return (kind, url);
    }
    let eps = cfg.deployment.endpoints.clone().unwrap_or_default();
    let path = match kind.as_str() {
        "chat" | "vlm" => eps.chat,
        "completions" | "completions_logprob" => eps.completions,
        "embedding" => eps.embedding,
        "ranking" => eps.ranking,
        _ => None,
    }
    .unwrap_or_else(|| "/v1/chat/completions".into());
    (kind, path)
}

/// The harness run config of a task: evaluation-wide settings merged under
/// the task's, plus the task and the endpoint (its URL as
/// [`URL_PLACEHOLDER`], filled in when the job runs).
pub fn run_config(cfg: &Config, rt: &ResolvedTask, task: &Task, endpoint_type: &str, vars: &[EnvVar]) -> J {
    let mut merged = J::Object(cfg.evaluation.nemo_evaluator_config.clone().unwrap_or_default());
    deep_merge(&mut merged, J::Object(task.nemo_evaluator_config.clone().unwrap_or_default()));
    let model_id = cfg
        .target
        .api_endpoint
        .model_id
        .clone()
        .or_else(|| cfg.deployment.served_model_name.clone())
        .unwrap_or_default();
    let mut endpoint = json!({ "url": URL_PLACEHOLDER, "model_id": model_id, "type": endpoint_type });
    // The harness reads the key from the variable named here (it exports it).
    if let Some(key) = &cfg.target.api_endpoint.api_key_name
        && vars.iter().any(|v| &v.name == key)
    {
        endpoint["api_key_name"] = json!(key);
    }
    if let Some(ac) = &cfg.target.api_endpoint.adapter_config {
        endpoint["adapter_config"] = J::Object(ac.clone());
    }
    if let Some(stream) = cfg.target.api_endpoint.stream {
        endpoint["stream"] = json!(stream);
    }
    // Nothing else: the harness's endpoint model refuses fields it lacks
    // (`config::validate` warns of other keys under `target.api_endpoint`).
    let mut base = json!({
        "config": { "type": rt.info.name, "output_dir": "/results" },
        "target": { "api_endpoint": endpoint },
    });
    // The user's settings win over the defaults above, except where the
    // run must point: the task, the output directory and the endpoint URL.
    deep_merge(&mut base, merged);
    set(&mut base, &["config", "type"], json!(rt.info.name));
    set(&mut base, &["config", "output_dir"], json!("/results"));
    set(&mut base, &["target", "api_endpoint", "url"], J::Null);
    for (name, aux) in &cfg.auxiliary_deployments {
        replace_strings(
            &mut base,
            &format!("auxiliary_deployments.{name}.model_id"),
            aux.served_model_name.as_deref().unwrap_or(""),
        );
    }
    let text = base.to_string();
    let placeholder = std::iter::once(URL_PLACEHOLDER.to_owned())
        .chain((1..).map(|i| format!("@@EVALCTL_ENDPOINT_URL_{i}@@")))
        .find(|p| !text.contains(p.as_str()))
        .unwrap_or_default();
    set(&mut base, &["target", "api_endpoint", "url"], json!(placeholder));
    base
}

/// Sets the value at `path`, making mappings of whatever lies on the way
/// (validation has refused anything else there; this keeps rendering total).
fn set(value: &mut J, path: &[&str], new: J) {
    let mut at = value;
    for key in path {
        if !at.is_object() {
            *at = J::Object(Default::default());
        }
        let J::Object(map) = at else { return };
        at = map.entry(*key).or_insert(J::Null);
    }
    *at = new;
}

/// Deep-merges JSON objects; other values replace.
pub fn deep_merge(dst: &mut J, src: J) {
    match (dst, src) {
        (J::Object(d), J::Object(s)) => {
            for (k, v) in s {
                match d.get_mut(&k) {
                    Some(existing) => deep_merge(existing, v),
                    None => {
                        d.insert(k, v);
                    }
                }
            }
        }
        (d, s) => *d = s,
    }
}

/// Replaces every string equal to `from`, at any depth.
fn replace_strings(v: &mut J, from: &str, to: &str) {
    match v {
        J::String(s) if s == from => *s = to.to_owned(),
        J::Array(a) => a.iter_mut().for_each(|x| replace_strings(x, from, to)),
        J::Object(o) => o.values_mut().for_each(|x| replace_strings(x, from, to)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_is_deep_for_objects_only() {
        let mut a = json!({"a": {"x": 1, "y": [1]}, "b": 1});
        deep_merge(&mut a, json!({"a": {"y": [2], "z": 3}, "c": null}));
        assert_eq!(a, json!({"a": {"x": 1, "y": [2], "z": 3}, "b": 1, "c": null}));
        let mut v = json!({"k": ["judge", {"m": "judge"}], "n": "other"});
        replace_strings(&mut v, "judge", "model");
        assert_eq!(v, json!({"k": ["model", {"m": "model"}], "n": "other"}));
    }

    #[test]
    fn the_url_placeholder_is_in_no_value() {
        let mut cfg: Config = serde_json::from_value(json!({
            "execution": {"output_dir": "/x"},
            "target": {"api_endpoint": {"url": "http://h/v1"}},
            "evaluation": {"tasks": [{"name": "t"}], "nemo_evaluator_config": {
                "a": "@@EVALCTL_ENDPOINT_URL@@", "@@EVALCTL_ENDPOINT_URL_1@@": "x"}},
        }))
        .unwrap();
        let info = crate::catalog::TaskInfo {
            harness: "h".into(),
            name: "t".into(),
            task_type: "t".into(),
            endpoint_types: vec!["chat".into()],
            container: "c".into(),
        };
        let rt = ResolvedTask { index: 0, name: "t".into(), info };
        let task = cfg.evaluation.tasks[0].clone();
        let rc = run_config(&cfg, &rt, &task, "chat", &[]);
        assert_eq!(url_placeholder(&rc), "@@EVALCTL_ENDPOINT_URL_2@@");
        assert_eq!(rc["a"], "@@EVALCTL_ENDPOINT_URL@@");
        cfg.evaluation.nemo_evaluator_config = None;
        let rc = run_config(&cfg, &rt, &task, "chat", &[]);
        assert_eq!(url_placeholder(&rc), URL_PLACEHOLDER);
    }
}
