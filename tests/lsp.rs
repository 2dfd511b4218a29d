//! Editor support, checked with the real yaml-language-server over LSP
//! (stdio): completion at the top level, under `execution`, `deployment` and
//! in a task; hover text from the doc comments; an unknown key and a wrong
//! type flagged; `${...}` and `???` accepted; the task snippet offered.
//! scripts/test.sh installs the server from the npm registry into target/npm.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct Server {
    child: Child,
    stdin: ChildStdin,
    inbox: Receiver<Value>,
    next_id: u64,
    diagnostics: Vec<(String, Vec<Value>)>,
}

impl Server {
    fn start() -> Server {
        let bin = root().join("target/npm/node_modules/yaml-language-server/bin/yaml-language-server");
        assert!(
            bin.exists(),
            "yaml-language-server is not installed: run scripts/test.sh (npm install --prefix target/npm yaml-language-server)"
        );
        let mut child = Command::new("node")
            .arg(&bin)
            .arg("--stdio")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start node");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            loop {
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some(n) = line.strip_prefix("Content-Length: ") {
                        len = n.parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; len];
                if r.read_exact(&mut body).is_err() {
                    return;
                }
                if let Ok(v) = serde_json::from_slice(&body)
                    && tx.send(v).is_err()
                {
                    return;
                }
            }
        });
        let mut s = Server { child, stdin, inbox: rx, next_id: 1, diagnostics: vec![] };
        let uri = format!("file://{}", root().display());
        s.request(
            "initialize",
            json!({
                "processId": std::process::id(),
                "rootUri": uri,
                "capabilities": {
                    "textDocument": {
                        "completion": {"completionItem": {"snippetSupport": true}},
                        "hover": {"contentFormat": ["markdown", "plaintext"]},
                        "publishDiagnostics": {}
                    },
                    "workspace": {"configuration": true}
                },
                "workspaceFolders": [{"uri": uri, "name": "evalctl"}]
            }),
        );
        s.notify("initialized", json!({}));
        s.notify("workspace/didChangeConfiguration", json!({"settings": settings()}));
        s
    }

    fn send(&mut self, msg: Value) {
        let body = msg.to_string();
        write!(self.stdin, "Content-Length: {}\r\n\r\n{body}", body.len()).unwrap();
        self.stdin.flush().unwrap();
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// Handles what the server sends until `done` picks a message.
    fn pump(&mut self, what: &str, mut done: impl FnMut(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = self.inbox.recv_timeout(left).unwrap_or_else(|_| panic!("no answer from the server: {what}"));
            if msg.get("method").is_some() && msg.get("id").is_some() {
                // A request from the server (configuration, registration): answer it.
                let result = match msg["method"].as_str() {
                    Some("workspace/configuration") => {
                        let n = msg["params"]["items"].as_array().map_or(1, Vec::len);
                        Value::Array(vec![settings()["yaml"].clone(); n])
                    }
                    _ => Value::Null,
                };
                let id = msg["id"].clone();
                self.send(json!({"jsonrpc": "2.0", "id": id, "result": result}));
                continue;
            }
            if msg["method"] == "textDocument/publishDiagnostics" {
                let uri = msg["params"]["uri"].as_str().unwrap_or_default().to_owned();
                let d = msg["params"]["diagnostics"].as_array().cloned().unwrap_or_default();
                self.diagnostics.push((uri, d));
            }
            if done(&msg) {
                return msg;
            }
        }
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        let msg = self.pump(method, |m| m.get("id") == Some(&json!(id)) && m.get("method").is_none());
        msg["result"].clone()
    }

    fn open(&mut self, uri: &str, text: &str) {
        self.notify(
            "textDocument/didOpen",
            json!({"textDocument": {"uri": uri, "languageId": "yaml", "version": 1, "text": text}}),
        );
    }

    /// Diagnostics published for `uri` after it was opened (waits for them).
    fn diagnostics_for(&mut self, uri: &str) -> Vec<Value> {
        if let Some((_, d)) = self.diagnostics.iter().rev().find(|(u, _)| u == uri) {
            return d.clone();
        }
        let msg = self.pump("diagnostics", |m| {
            m["method"] == "textDocument/publishDiagnostics" && m["params"]["uri"] == json!(uri)
        });
        msg["params"]["diagnostics"].as_array().cloned().unwrap_or_default()
    }

    fn items(&mut self, uri: &str, line: usize, character: usize) -> Vec<Value> {
        let r = self.request(
            "textDocument/completion",
            json!({"textDocument": {"uri": uri}, "position": {"line": line, "character": character}}),
        );
        let items = r.get("items").cloned().unwrap_or(r);
        items.as_array().cloned().unwrap_or_default()
    }

    fn labels(&mut self, uri: &str, line: usize, character: usize) -> Vec<String> {
        self.items(uri, line, character).iter().filter_map(|i| i["label"].as_str().map(str::to_owned)).collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn settings() -> Value {
    json!({"yaml": {"validate": true, "hover": true, "completion": true, "format": {"enable": false}, "schemaStore": {"enable": false}}})
}

/// A document beside the examples, so the modeline's relative schema path resolves.
fn uri(name: &str) -> String {
    format!("file://{}/examples/{name}", root().display())
}

const MODELINE: &str = "# yaml-language-server: $schema=../schemas/evalctl.draft-07.schema.json\n";

#[test]
fn completion_hover_and_diagnostics_from_the_schema() {
    let mut s = Server::start();

    // The example as committed: no diagnostics, `${oc.env:...}` included.
    let example = std::fs::read_to_string(root().join("examples/slurm_llama_3_1_8b_instruct.yaml")).unwrap();
    let ex_uri = uri("slurm_llama_3_1_8b_instruct.yaml");
    s.open(&ex_uri, &example);
    assert_eq!(s.diagnostics_for(&ex_uri), Vec::<Value>::new(), "the example is clean");

    // Completion: top level, execution, deployment, a task.
    let doc = format!(
        "{MODELINE}defaults:\n  - execution: slurm/default\n  - _self_\n\nexecution:\n  account: a\n  \ndeployment:\n  type: vllm\n  \nevaluation:\n  tasks:\n    - name: gsm8k\n      \n"
    );
    let doc_uri = uri("lsp-completion.yaml");
    s.open(&doc_uri, &doc);
    // Keys the document does not have yet (the ones it has are not offered again).
    let top = s.labels(&doc_uri, 4, 0);
    for k in ["name", "target", "env_vars", "auxiliary_deployments", "export"] {
        assert!(top.iter().any(|l| l == k), "top level offers `{k}`: {top:?}");
    }
    assert!(!top.iter().any(|l| l == "execution"), "an existing key is not offered again: {top:?}");
    let exec = s.labels(&doc_uri, 7, 2);
    for k in ["walltime", "partition", "num_nodes", "topology"] {
        assert!(exec.iter().any(|l| l == k), "execution offers `{k}`: {exec:?}");
    }
    let dep = s.labels(&doc_uri, 10, 2);
    for k in ["tensor_parallel_size", "hf_model_handle", "checkpoint_path"] {
        assert!(dep.iter().any(|l| l == k), "deployment offers `{k}`: {dep:?}");
    }
    let task = s.labels(&doc_uri, 14, 6);
    for k in ["nemo_evaluator_config", "container", "env_vars"] {
        assert!(task.iter().any(|l| l == k), "a task offers `{k}`: {task:?}");
    }

    // The snippet for a new task, inside the task list.
    let snip = format!("{MODELINE}evaluation:\n  tasks:\n    - \n");
    let snip_uri = uri("lsp-snippet.yaml");
    s.open(&snip_uri, &snip);
    let items = s.labels(&snip_uri, 3, 6);
    assert!(items.iter().any(|l| l == "evaluation task"), "the task snippet is offered: {items:?}");

    // Values of an enumeration come with what each one means.
    let enum_doc = format!("{MODELINE}deployment:\n  type: \nexecution:\n  topology: \n");
    let enum_uri = uri("lsp-enum.yaml");
    s.open(&enum_uri, &enum_doc);
    for (line, col, value, meaning) in
        [(2, 8, "sglang", "SGLang server"), (2, 8, "none", "Nothing deployed"), (4, 12, "shared", "One deployment job")]
    {
        let items = s.items(&enum_uri, line, col);
        let item = items
            .iter()
            .find(|i| i["label"] == json!(value))
            .unwrap_or_else(|| panic!("`{value}` is offered at {line}:{col}: {items:?}"));
        assert!(item["documentation"].to_string().contains(meaning), "`{value}` is explained: {item}");
    }

    // Hover shows the doc comment.
    let hover = s.request(
        "textDocument/hover",
        json!({"textDocument": {"uri": ex_uri}, "position": {"line": 16, "character": 4}}),
    );
    let text = hover.to_string();
    assert!(text.contains("ten hours"), "hover on walltime: {text}");

    // An unknown key and a wrong type are flagged; `${...}` and `???` are not.
    let bad = format!(
        "{MODELINE}execution:\n  output_dir: ???\n  walltme: 01:00:00\n  num_nodes: two\n  num_instances: ${{oc.env:INSTANCES}}\n  account: ???\nevaluation:\n  tasks:\n    - name: gsm8k\n"
    );
    let bad_uri = uri("lsp-diagnostics.yaml");
    s.open(&bad_uri, &bad);
    let diags = s.diagnostics_for(&bad_uri);
    let lines: Vec<u64> = diags.iter().filter_map(|d| d["range"]["start"]["line"].as_u64()).collect();
    let messages: Vec<String> = diags.iter().filter_map(|d| d["message"].as_str().map(str::to_owned)).collect();
    assert_eq!(lines.len(), 2, "exactly the two mistakes: {messages:?}");
    assert!(lines.contains(&3), "the unknown key `walltme` (line 4): {messages:?}");
    assert!(lines.contains(&4), "the wrong type of num_nodes (line 5): {messages:?}");
}
