//! A real MLflow tracking server for the tests that export to one
//! (`export_mlflow`, the e2e scenario with real stacks): `mlflow` from PyPI
//! in a cached venv, a server on a free port with a SQLite store and
//! proxied artifacts in a temp dir, and MLflow's own Python client as the
//! oracle of what the server holds.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as J;

use super::pyvenv;

const MLFLOW_VERSION: &str = "3.17.2";

pub fn python() -> PathBuf {
    pyvenv::python("mlflow-venv", "mlflow", MLFLOW_VERSION, "export_mlflow")
}

/// A tracking server of this test; killed (its whole process group) on drop.
pub struct MlflowServer {
    child: Child,
    pub url: String,
    _dir: TempDir,
}

pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let d = pyvenv::target_dir().join("tmp").join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl MlflowServer {
    /// Starts `mlflow server`; `serve_artifacts: false` passes
    /// `--no-serve-artifacts` with a plain directory as artifact root.
    pub fn start(name: &str, serve_artifacts: bool) -> MlflowServer {
        use std::os::unix::process::CommandExt;
        let python = python();
        let dir = TempDir::new(name);
        let port = free_port();
        let mut cmd = Command::new(&python);
        cmd.args(["-m", "mlflow", "server", "--host", "127.0.0.1", "--port", &port.to_string(), "--workers", "1"])
            .arg("--backend-store-uri")
            .arg(format!("sqlite:///{}", dir.0.join("mlflow.db").display()));
        if serve_artifacts {
            cmd.arg("--artifacts-destination").arg(dir.0.join("artifacts"));
        } else {
            cmd.arg("--no-serve-artifacts").arg("--default-artifact-root").arg(dir.0.join("artifacts"));
        }
        let log = std::fs::File::create(dir.0.join("server.log")).unwrap();
        // The server's job runner (GenAI scorers: a dozen worker
        // processes) is not needed to track runs.
        cmd.env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false");
        cmd.stdout(log.try_clone().unwrap()).stderr(log).stdin(Stdio::null()).process_group(0);
        let child = cmd.spawn().expect("starting mlflow server");
        let server = MlflowServer { child, url: format!("http://127.0.0.1:{port}"), _dir: dir };
        server.wait_healthy();
        server
    }

    fn wait_healthy(&self) {
        let start = Instant::now();
        let agent: ureq::Agent =
            ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(2))).build().into();
        while start.elapsed() < Duration::from_secs(120) {
            if let Ok(mut r) = agent.get(format!("{}/health", self.url)).call()
                && r.body_mut().read_to_string().is_ok_and(|b| b.trim() == "OK")
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        let log = std::fs::read_to_string(self._dir.0.join("server.log")).unwrap_or_default();
        panic!("mlflow server at {} not healthy after 120 s:\n{log}", self.url);
    }
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        // The server runs its workers as children: end the whole group (its
        // store is a temp dir, nothing to shut down gracefully).
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.child.id())]).status();
        let _ = self.child.wait();
    }
}

/// What MLflow's Python client sees in an experiment: every run (also
/// deleted ones: none should be) with tags, params, latest metrics, the
/// length of each metric's history, and the text of `results.yml`.
const ORACLE: &str = r#"
import json, os, sys, tempfile
from mlflow.tracking import MlflowClient
from mlflow.entities import ViewType
uri, name = sys.argv[1], sys.argv[2]
c = MlflowClient(tracking_uri=uri)
e = c.get_experiment_by_name(name)
out = []
for r in c.search_runs([e.experiment_id], run_view_type=ViewType.ALL, max_results=1000):
    rid = r.info.run_id
    arts = [a.path for a in c.list_artifacts(rid)]
    text = None
    if "results.yml" in arts:
        d = tempfile.mkdtemp()
        with open(c.download_artifacts(rid, "results.yml", d)) as f:
            text = f.read()
    out.append({
        "run_id": rid,
        "name": r.info.run_name,
        "status": r.info.status,
        "lifecycle": r.info.lifecycle_stage,
        "tags": {k: v for k, v in r.data.tags.items()},
        "params": r.data.params,
        "metrics": r.data.metrics,
        "history": {k: len(c.get_metric_history(rid, k)) for k in r.data.metrics},
        "artifacts": arts,
        "results": text,
    })
json.dump(out, sys.stdout)
"#;

/// Runs of the experiment by unit, as the oracle reads them.
pub fn oracle(server: &MlflowServer, experiment: &str) -> Vec<J> {
    let out = Command::new(python()).args(["-c", ORACLE, &server.url, experiment]).output().unwrap();
    assert!(out.status.success(), "oracle failed: {}", String::from_utf8_lossy(&out.stderr));
    let runs: J = serde_json::from_slice(&out.stdout).unwrap();
    runs.as_array().unwrap().clone()
}
