//! The thin HTTP edge of the MLflow export: the tracking server's REST
//! API (`/api/2.0/mlflow/...`) and its artifact proxy
//! (`/api/2.0/mlflow-artifacts/...`), one blocking request at a time.
//! What to send is decided in [`super::mlflow`]; this module only sends it
//! and turns answers into its plain types.
//!
//! Credentials: a tracking URI may carry them (`https://user:pass@host`);
//! they are taken out of the URL, sent as a Basic `Authorization` header
//! and never shown: [`redact`] is what every message prints. Without
//! them, `MLFLOW_TRACKING_TOKEN` (Bearer) or `MLFLOW_TRACKING_USERNAME` and
//! `MLFLOW_TRACKING_PASSWORD` (Basic) are used, as MLflow's client does.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use serde_json::{Value as J, json};

use super::mlflow::{self, Decision, Run, TAG_RESULTS_SHA};

/// The most entries of each kind one `runs/log-batch` takes.
const BATCH_METRICS: usize = 1000;
const BATCH_PARAMS: usize = 100;
const BATCH_TAGS: usize = 100;

/// A tracking URI with its userinfo replaced by `***`.
pub fn redact(uri: &str) -> String {
    match split(uri) {
        Some((scheme, Some(_), rest)) => format!("{scheme}://***@{rest}"),
        _ => uri.to_owned(),
    }
}

/// `scheme`, userinfo and the rest (host, port, path) of `scheme://...`.
fn split(uri: &str) -> Option<(&str, Option<&str>, &str)> {
    let (scheme, rest) = uri.split_once("://")?;
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => Some((scheme, Some(&rest[..at]), &rest[at + 1..])),
        None => Some((scheme, None, rest)),
    }
}

/// A failed request: what was asked, and the server's answer or why none came.
#[derive(Debug)]
pub struct HttpError {
    pub status: Option<u16>,
    /// MLflow's `error_code` (e.g. `RESOURCE_DOES_NOT_EXIST`).
    pub code: Option<String>,
    pub message: String,
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// An experiment of the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Experiment {
    pub id: String,
    pub name: String,
}

/// A tracking server.
pub struct Server {
    /// The URL without credentials or a trailing `/`.
    base: String,
    /// The URL as messages show it.
    shown: String,
    auth: Option<String>,
    agent: ureq::Agent,
}

impl Server {
    /// A server at `uri` (`http://` or `https://`); `env` reads the
    /// credentials' environment variables.
    pub fn new(uri: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Server, String> {
        let shown = redact(uri);
        let Some((scheme, userinfo, rest)) = split(uri) else {
            return Err(format!(
                "MLflow tracking URI `{shown}`: evalctl talks to a tracking server over HTTP; give its http:// or https:// URL"
            ));
        };
        if scheme != "http" && scheme != "https" {
            return Err(format!(
                "MLflow tracking URI `{shown}`: `{scheme}://` is not a tracking server evalctl can reach; give its http:// or https:// URL"
            ));
        }
        let basic = |user: &str, pass: &str| {
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}")))
        };
        let auth = match userinfo {
            Some(u) => {
                let (user, pass) = u.split_once(':').unwrap_or((u, ""));
                Some(basic(user, pass))
            }
            None => match (env("MLFLOW_TRACKING_TOKEN"), env("MLFLOW_TRACKING_USERNAME")) {
                (Some(t), _) if !t.is_empty() => Some(format!("Bearer {t}")),
                (_, Some(u)) if !u.is_empty() => Some(basic(&u, &env("MLFLOW_TRACKING_PASSWORD").unwrap_or_default())),
                _ => None,
            },
        };
        let base = format!("{scheme}://{}", rest.trim_end_matches('/'));
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build();
        Ok(Server { base, shown: redact(uri).trim_end_matches('/').to_owned(), auth, agent: config.into() })
    }

    /// The URL as messages show it (credentials hidden).
    pub fn shown(&self) -> &str {
        &self.shown
    }

    fn request(&self, method: &str, path: &str, query: &[(&str, &str)], body: Option<Vec<u8>>) -> Result<J, HttpError> {
        let url = format!("{}{path}", self.base);
        let what = format!("{method} {}{path}", self.shown);
        let fail = |status, code, message: String| HttpError { status, code, message: format!("{what}: {message}") };
        let with_auth = |mut headers: Vec<(&'static str, String)>| {
            if let Some(a) = &self.auth {
                headers.push(("Authorization", a.clone()));
            }
            headers
        };
        let result = match (method, body) {
            ("GET", _) => {
                let mut r = self.agent.get(&url).query_pairs(query.iter().copied());
                for (k, v) in with_auth(vec![]) {
                    r = r.header(k, v);
                }
                r.call()
            }
            (_, body) => {
                let mut r = match method {
                    "PUT" => self.agent.put(&url),
                    _ => self.agent.post(&url),
                };
                let content_type = if method == "PUT" { "application/octet-stream" } else { "application/json" };
                for (k, v) in with_auth(vec![("Content-Type", content_type.to_owned())]) {
                    r = r.header(k, v);
                }
                r.send(body.unwrap_or_default())
            }
        };
        let mut response = result.map_err(|e| fail(None, None, format!("no answer: {e}")))?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let parsed: J = if text.trim().is_empty() { json!({}) } else { serde_json::from_str(&text).unwrap_or(J::Null) };
        if (200..300).contains(&status) {
            return Ok(parsed);
        }
        let code = parsed.get("error_code").and_then(J::as_str).map(str::to_owned);
        let message = parsed.get("message").and_then(J::as_str).map(str::to_owned).unwrap_or_else(|| {
            let t: String = text.chars().take(300).collect();
            t.trim().to_owned()
        });
        let code_shown = code.as_deref().map(|c| format!(" {c}")).unwrap_or_default();
        Err(fail(Some(status), code, format!("HTTP {status}{code_shown}: {message}")))
    }

    fn post(&self, path: &str, body: &J) -> Result<J, HttpError> {
        self.request("POST", path, &[], Some(serde_json::to_vec(body).expect("plain data serializes")))
    }

    /// The experiment named `name`, created when it does not exist.
    pub fn experiment(&self, name: &str) -> Result<Experiment, HttpError> {
        let found = self.request("GET", "/api/2.0/mlflow/experiments/get-by-name", &[("experiment_name", name)], None);
        let id = match found {
            Ok(j) => {
                let e = &j["experiment"];
                if e["lifecycle_stage"] == "deleted" {
                    return Err(HttpError {
                        status: None,
                        code: None,
                        message: format!(
                            "MLflow experiment `{name}` on {} is deleted: restore it, or delete it for good (`mlflow gc`), or export to another experiment",
                            self.shown
                        ),
                    });
                }
                text(&e["experiment_id"])
            }
            Err(e) if e.code.as_deref() == Some("RESOURCE_DOES_NOT_EXIST") => {
                let made = self.post("/api/2.0/mlflow/experiments/create", &json!({"name": name}))?;
                text(&made["experiment_id"])
            }
            Err(e) => return Err(e),
        };
        Ok(Experiment { id, name: name.to_owned() })
    }

    /// Every active run of the experiment tagged with the stack.
    pub fn runs(&self, experiment: &Experiment, stack: &str) -> Result<Vec<Run>, HttpError> {
        let mut out = vec![];
        let mut token = String::new();
        loop {
            let mut body = json!({
                "experiment_ids": [experiment.id],
                "filter": mlflow::stack_filter(stack),
                "max_results": 1000,
                "run_view_type": "ACTIVE_ONLY",
            });
            if !token.is_empty() {
                body["page_token"] = json!(token);
            }
            let page = self.post("/api/2.0/mlflow/runs/search", &body)?;
            out.extend(page["runs"].as_array().into_iter().flatten().map(run));
            match page["next_page_token"].as_str() {
                Some(t) if !t.is_empty() => token = t.to_owned(),
                _ => return Ok(out),
            }
        }
    }

    /// Carries out a decision for a unit; returns its run id.
    pub fn carry_out(
        &self,
        experiment: &Experiment,
        run_name: &str,
        d: &Decision,
        artifact: Option<&str>,
        now_ms: u64,
    ) -> Result<String, HttpError> {
        let sha_tag = d.tags.get(TAG_RESULTS_SHA);
        let other_tags: BTreeMap<&String, &String> = d.tags.iter().filter(|(k, _)| *k != TAG_RESULTS_SHA).collect();
        let created = d.run_id.is_none();
        let (run_id, artifact_uri) = match &d.run_id {
            Some(id) => (id.clone(), None),
            None => {
                let made = self.post(
                    "/api/2.0/mlflow/runs/create",
                    &json!({
                        "experiment_id": experiment.id,
                        "run_name": run_name,
                        "start_time": now_ms,
                        "tags": other_tags.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
                    }),
                )?;
                let info = &made["run"]["info"];
                (text(&info["run_id"]), Some(text(&info["artifact_uri"])))
            }
        };
        let metrics: Vec<J> =
            d.metrics.iter().map(|(k, v)| json!({"key": k, "value": v, "timestamp": now_ms, "step": 0})).collect();
        let params: Vec<J> = d.params.iter().map(|(k, v)| json!({"key": k, "value": v})).collect();
        let tags: Vec<J> =
            if created { vec![] } else { other_tags.iter().map(|(k, v)| json!({"key": k, "value": v})).collect() };
        self.log_batch(&run_id, &metrics, &params, &tags)?;
        // Finished before the upload: a failed upload leaves a complete
        // run without the file's hash tag, so the next export uploads it.
        if created {
            self.post(
                "/api/2.0/mlflow/runs/update",
                &json!({"run_id": run_id, "status": "FINISHED", "end_time": now_ms}),
            )?;
        }
        if d.upload
            && let Some(body) = artifact
        {
            let uri = match artifact_uri {
                Some(u) => u,
                None => {
                    let got = self.request("GET", "/api/2.0/mlflow/runs/get", &[("run_id", &run_id)], None)?;
                    text(&got["run"]["info"]["artifact_uri"])
                }
            };
            self.upload(&uri, body)?;
        }
        if let Some(sha) = sha_tag {
            self.log_batch(&run_id, &[], &[], &[json!({"key": TAG_RESULTS_SHA, "value": sha})])?;
        }
        for old in &d.retire {
            self.log_batch(old, &[], &[], &[json!({"key": mlflow::TAG_CURRENT, "value": "false"})])?;
        }
        Ok(run_id)
    }

    fn log_batch(&self, run_id: &str, metrics: &[J], params: &[J], tags: &[J]) -> Result<(), HttpError> {
        let rounds = [
            metrics.len().div_ceil(BATCH_METRICS),
            params.len().div_ceil(BATCH_PARAMS),
            tags.len().div_ceil(BATCH_TAGS),
        ];
        for i in 0..rounds.into_iter().max().unwrap_or(0) {
            let part = |v: &[J], n: usize| v.iter().skip(i * n).take(n).cloned().collect::<Vec<_>>();
            self.post(
                "/api/2.0/mlflow/runs/log-batch",
                &json!({
                    "run_id": run_id,
                    "metrics": part(metrics, BATCH_METRICS),
                    "params": part(params, BATCH_PARAMS),
                    "tags": part(tags, BATCH_TAGS),
                }),
            )?;
        }
        Ok(())
    }

    /// Uploads the results file through the server's artifact proxy.
    fn upload(&self, artifact_uri: &str, text: &str) -> Result<(), HttpError> {
        let Some(path) = mlflow::proxied_path(artifact_uri, mlflow::ARTIFACT) else {
            return Err(HttpError {
                status: None,
                code: None,
                message: format!(
                    "the MLflow server at {} does not serve artifacts (the run's artifact location is `{artifact_uri}`, which the client would have to write itself): start the server with `--serve-artifacts` (the default since MLflow 2.0) and an `mlflow-artifacts:` artifact root, or set `export.mlflow.log_artifacts: false`",
                    self.shown
                ),
            });
        };
        self.request("PUT", &format!("/api/2.0/mlflow-artifacts/artifacts/{path}"), &[], Some(text.as_bytes().to_vec()))
            .map(|_| ())
            .map_err(|e| HttpError {
                message: format!(
                    "{e} (uploading `{}`; does the server serve artifacts? `mlflow server --serve-artifacts`)",
                    mlflow::ARTIFACT
                ),
                ..e
            })
    }
}

/// A JSON string or number as text.
fn text(v: &J) -> String {
    match v {
        J::String(s) => s.clone(),
        J::Null => String::new(),
        other => other.to_string(),
    }
}

/// A run of `runs/search`.
fn run(r: &J) -> Run {
    let pairs = |v: &J| -> BTreeMap<String, String> {
        v.as_array().into_iter().flatten().map(|p| (text(&p["key"]), text(&p["value"]))).collect()
    };
    Run {
        run_id: text(&r["info"]["run_id"]),
        artifact_uri: text(&r["info"]["artifact_uri"]),
        tags: pairs(&r["data"]["tags"]),
        params: pairs(&r["data"]["params"]),
        metrics: r["data"]["metrics"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| Some((text(&m["key"]), m["value"].as_f64()?)))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_show_and_go_into_a_header() {
        assert_eq!(redact("https://user:pa55@mlflow.example.com:5000/x"), "https://***@mlflow.example.com:5000/x");
        assert_eq!(redact("http://h:5000/a@b"), "http://h:5000/a@b");
        let none = |_: &str| None;
        let s = Server::new("https://user:pa55@mlflow.example.com/", &none).unwrap();
        assert_eq!(s.shown(), "https://***@mlflow.example.com");
        assert_eq!(s.base, "https://mlflow.example.com");
        assert_eq!(s.auth.as_deref(), Some("Basic dXNlcjpwYTU1"));
        let token = |k: &str| (k == "MLFLOW_TRACKING_TOKEN").then(|| "t0k".to_owned());
        assert_eq!(Server::new("http://h", &token).unwrap().auth.as_deref(), Some("Bearer t0k"));
        let e = Server::new("databricks://user:secret@ws", &none).err().unwrap();
        assert!(e.contains("`databricks://***@ws`") && !e.contains("secret"), "{e}");
        assert!(Server::new("mlflow.example.com", &none).is_err());
    }
}
