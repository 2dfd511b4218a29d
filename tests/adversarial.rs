//! Configs from pull requests are hostile input. Every string field of the
//! config schema (enumerated from the generated JSON Schema, so a new field
//! is covered without touching this file) receives adversarial strings:
//! quotes, `$()`, backticks, `;`, newlines, `\r`, `#`, `,`, `:`, `=`, `%`,
//! `\`, braces, `*`, spaces, a leading `-`, RTL and zero-width characters,
//! and strings that try the destinations' own syntax (HAProxy directives,
//! JSON, container mounts, the run config's here-document and placeholder).
//!
//! A field may refuse a value it has a grammar for (names, times, enums,
//! variable names, checked paths and URLs): then the refusal must be a
//! located error pointing at the line that holds the value, never a panic.
//! Refused values are taken out and the config is loaded again, until it
//! renders. Every script rendered is then checked (`bash -n`, its `#SBATCH`
//! header) and run with bash against recording stand-ins for Slurm, `curl`,
//! the model servers, HAProxy and the harness, and the test asserts that
//! (a) nothing injected runs: each payload tries `touch $CANARY_DIR/pwned-N`
//! in many syntaxes, and the canary folder stays empty; (b) every accepted
//! value arrives verbatim where it belongs: one argv element of the server
//! command, the exact `--container-image` and `--container-mounts`, the
//! container environment, the run config JSON the harness reads, the
//! HAProxy health check and the `#SBATCH` lines.
//!
//! Shell fields (`command`, `base_command`, `pre_cmd`, `post_cmd`) are code
//! by design and get no payload of their own; values interpolated into them
//! must arrive as one word (`extra_args` as its shell words).

use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use evalctl::config::interpolate::is_shell_path;
use evalctl::config::node::Seg;
use evalctl::config::schema::{self, Draft};
use evalctl::config::{self, Loaded};
use evalctl::diag::{Diagnostic, SourceId, Sources};
use evalctl::render::{self, Rendered, RenderedJob};
use proptest::prelude::*;
use serde_json::{Value as J, json};

// ---------------------------------------------------------------------------
// Payloads

/// Adversarial values. `N` is replaced by the payload's number, so a canary
/// file names the payload that created it.
const PAYLOADS: &[&str] = &[
    "$(touch $CANARY_DIR/pwned-N)",
    "`touch $CANARY_DIR/pwned-N`",
    "x'; touch $CANARY_DIR/pwned-N; echo '",
    "x\"; touch $CANARY_DIR/pwned-N; echo \"",
    "x\ntouch $CANARY_DIR/pwned-N\n",
    "x\r\ntouch $CANARY_DIR/pwned-N # comment",
    "  ; touch $CANARY_DIR/pwned-N #",
    "a|touch $CANARY_DIR/pwned-N &",
    "/adv/$(touch $CANARY_DIR/pwned-N)/x",
    "/adv/p'a\"t h,with:colon=eq%25%j\\back{brace}*star #hash;semi",
    "-rf --help --served-model-name=evil",
    "m\u{202e}dlrow\u{200b}\u{200d}é💥 مرحبا",
    "/v1/health\n  http-check send hdr x y\n  server evil 127.0.0.1:1 check",
    "/v1/x\",\"injected\":\"yes",
    "http://h:8000/v1/chat/completions?q=$(touch$IFS$CANARY_DIR/pwned-N)&x='a';b",
    "http://h/v1/x\"},\"injected\":{\"a\":\"\\",
    "http://h/v1/chat/completions\ntouch $CANARY_DIR/pwned-N",
    "EVALCTL_RUN_CONFIG_END\ntouch $CANARY_DIR/pwned-N",
    "@@EVALCTL_ENDPOINT_URL@@",
    "${HOME}/x",
    "/v1/ok-path_%20~!$&()*+,;=:@.",
    "%x%%j%n",
    "",
    "*",
    "/adv/a:ro,/etc:/host-etc",
    "/adv/x,/etc:/etc:rw",
];

fn payload(i: usize) -> String {
    PAYLOADS[i].replace("pwned-N", &format!("pwned-{i}"))
}

/// The value written into the config for `value`: `${` is the config's
/// interpolation syntax, so it is escaped (the config then holds `${`).
fn escaped(value: &str) -> String {
    value.replace("${", "\\${")
}

// ---------------------------------------------------------------------------
// Fields, from the schema

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Pat {
    Key(String),
    /// Any key of a typed map (`mounts`, `env_vars`, `auxiliary_deployments`).
    AnyKey,
    /// A key of a mapping passed through unchanged (`nemo_evaluator_config`).
    OpenKey,
    AnyItem,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Field {
    pat: Vec<Pat>,
    /// The payload is the last map key rather than the value.
    as_key: bool,
    /// An environment value, written `lit:PAYLOAD`.
    lit: bool,
}

impl Field {
    fn label(&self) -> String {
        let mut s = String::new();
        for (i, p) in self.pat.iter().enumerate() {
            match p {
                Pat::Key(k) => {
                    if i > 0 {
                        s.push('.');
                    }
                    s.push_str(k);
                }
                Pat::AnyKey => s.push_str(".<key>"),
                Pat::OpenKey => s.push_str(".<any>"),
                Pat::AnyItem => s.push_str("[]"),
            }
        }
        if self.as_key {
            s.push_str("(key)");
        }
        if self.lit {
            s.push_str("(lit:)");
        }
        s
    }

    fn under(&self, key: &str) -> bool {
        self.pat.iter().any(|p| matches!(p, Pat::Key(k) if k == key))
    }

    /// A field whose text is shell code by design.
    fn is_shell(&self) -> bool {
        !self.as_key && matches!(self.pat.last(), Some(Pat::Key(k)) if is_shell_path(&[Seg::Key(k.clone())]))
    }
}

fn resolve<'a>(root: &'a J, mut n: &'a J) -> &'a J {
    while let Some(r) = n.get("$ref").and_then(J::as_str) {
        let mut t = root;
        for part in r.trim_start_matches("#/").split('/') {
            t = &t[part];
        }
        n = t;
    }
    n
}

fn types(n: &J) -> Vec<&str> {
    match n.get("type") {
        Some(J::String(s)) => vec![s.as_str()],
        Some(J::Array(a)) => a.iter().filter_map(J::as_str).collect(),
        _ => vec![],
    }
}

fn walk(root: &J, n: &J, path: &mut Vec<Pat>, out: &mut Vec<Field>, depth: usize) {
    if depth > 16 {
        return;
    }
    let n = resolve(root, n);
    for k in ["anyOf", "oneOf", "allOf"] {
        for alt in n.get(k).and_then(J::as_array).into_iter().flatten() {
            walk(root, alt, path, out, depth + 1);
        }
    }
    let ts = types(n);
    let field = |path: &[Pat], as_key| Field { pat: path.to_vec(), as_key, lit: false };
    if ts.contains(&"string") && !path.is_empty() {
        out.push(field(path, false));
    }
    if let Some(props) = n.get("properties").and_then(J::as_object) {
        for (k, v) in props {
            path.push(Pat::Key(k.clone()));
            walk(root, v, path, out, depth + 1);
            path.pop();
        }
    }
    if let Some(items) = n.get("items").filter(|i| i.is_object()) {
        path.push(Pat::AnyItem);
        walk(root, items, path, out, depth + 1);
        path.pop();
    }
    match n.get("additionalProperties") {
        Some(ap @ J::Object(o)) if !o.is_empty() => {
            path.push(Pat::AnyKey);
            out.push(field(path, true));
            walk(root, ap, path, out, depth + 1);
            path.pop();
        }
        Some(J::Bool(false)) => {}
        _ if ts.contains(&"object") => {
            path.push(Pat::OpenKey);
            out.push(field(path, true));
            out.push(field(path, false));
            path.pop();
        }
        _ => {}
    }
}

/// Every string field of the schema (map keys included), the shell fields
/// left out, each environment value twice (bare and `lit:`).
fn fields() -> Vec<Field> {
    let root = schema::schema(Draft::D2020_12);
    let mut all = vec![];
    walk(&root, &root, &mut vec![], &mut all, 0);
    let mut out: Vec<Field> = vec![];
    for f in all {
        if f.is_shell() || out.contains(&f) {
            continue;
        }
        if f.under("env_vars") && !f.as_key {
            out.push(Field { lit: true, ..f.clone() });
        }
        out.push(f);
    }
    out
}

// ---------------------------------------------------------------------------
// Putting a value into a config

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum P {
    K(String),
    I(usize),
}

/// A key for a typed map that has none yet, by what the map holds.
fn fresh_key(ctx: &[P]) -> &'static str {
    let under = |k: &str| ctx.iter().any(|p| *p == P::K(k.into()));
    if under("mounts") {
        "/adv/src"
    } else if under("env_vars") {
        "ADV_VAR"
    } else {
        "adv"
    }
}

fn fresh_value(ctx: &[P]) -> J {
    let under = |k: &str| ctx.iter().any(|p| *p == P::K(k.into()));
    json!(if under("mounts") {
        "/adv/dst"
    } else if under("env_vars") {
        "lit:adv"
    } else {
        "adv"
    })
}

/// Writes `value` (or, for a key field, `key`) at the field's place in
/// `cfg`; returns the path of what was written, or `None` when the
/// scenario has no such place (an explicit `null` in the scenario means
/// "leave unset": e.g. `checkpoint_path` next to `hf_model_handle`).
fn inject(cur: &mut J, pat: &[Pat], as_key: bool, text: &str, ctx: &mut Vec<P>) -> Option<Vec<P>> {
    let last = pat.len() == 1;
    let value = || json!(text);
    let obj = |cur: &mut J| -> Option<()> {
        if cur.is_null() {
            *cur = json!({});
        }
        cur.is_object().then_some(())
    };
    let done = |ctx: &Vec<P>, p: P| {
        let mut v = ctx.clone();
        v.push(p);
        Some(v)
    };
    match &pat[0] {
        Pat::Key(k) => {
            obj(cur)?;
            let m = cur.as_object_mut()?;
            if matches!(m.get(k), Some(J::Null)) {
                return None;
            }
            if last && !as_key {
                m.insert(k.clone(), value());
                return done(ctx, P::K(k.clone()));
            }
            let child = m.entry(k.clone()).or_insert(J::Null);
            ctx.push(P::K(k.clone()));
            inject(child, &pat[1..], as_key, text, ctx)
        }
        Pat::AnyKey | Pat::OpenKey => {
            obj(cur)?;
            let open = pat[0] == Pat::OpenKey;
            let m = cur.as_object_mut()?;
            if last && as_key {
                let v =
                    if open { json!("adv") } else { m.values().next().cloned().unwrap_or_else(|| fresh_value(ctx)) };
                m.insert(text.to_owned(), v);
                return done(ctx, P::K(text.to_owned()));
            }
            let key = if open {
                "adv-key".to_owned()
            } else {
                match m.keys().next() {
                    Some(k) => k.clone(),
                    None if last => fresh_key(ctx).to_owned(),
                    None => return None,
                }
            };
            if last {
                m.insert(key.clone(), value());
                return done(ctx, P::K(key));
            }
            let child = m.get_mut(&key)?;
            ctx.push(P::K(key));
            inject(child, &pat[1..], as_key, text, ctx)
        }
        Pat::AnyItem => {
            if cur.is_null() {
                *cur = json!([]);
            }
            let a = cur.as_array_mut()?;
            if last && !as_key {
                a.push(value());
                return done(ctx, P::I(a.len() - 1));
            }
            let child = a.first_mut()?;
            ctx.push(P::I(0));
            inject(child, &pat[1..], as_key, text, ctx)
        }
    }
}

/// Block YAML with one scalar per line, each quoted as JSON (a subset of
/// YAML's double-quoted style), and the line of every key or item.
fn to_yaml(v: &J) -> (String, BTreeMap<Vec<P>, u32>) {
    fn scalar(v: &J) -> String {
        match v {
            J::Object(o) if o.is_empty() => "{}".into(),
            J::Array(a) if a.is_empty() => "[]".into(),
            other => serde_json::to_string(other).unwrap(),
        }
    }
    fn nested(v: &J) -> bool {
        matches!(v, J::Object(o) if !o.is_empty()) || matches!(v, J::Array(a) if !a.is_empty())
    }
    fn emit(v: &J, ind: usize, path: &mut Vec<P>, out: &mut String, line: &mut u32, lines: &mut BTreeMap<Vec<P>, u32>) {
        let mut entry = |p: P, x: &J, head: String, out: &mut String, line: &mut u32| {
            path.push(p);
            lines.insert(path.clone(), *line);
            out.push_str(&" ".repeat(ind));
            out.push_str(&head);
            if nested(x) {
                out.push('\n');
                *line += 1;
                emit(x, ind + 2, path, out, line, lines);
            } else {
                out.push(' ');
                out.push_str(&scalar(x));
                out.push('\n');
                *line += 1;
            }
            path.pop();
        };
        match v {
            J::Object(m) => {
                for (k, x) in m {
                    entry(P::K(k.clone()), x, format!("{}:", serde_json::to_string(k).unwrap()), out, line);
                }
            }
            J::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    entry(P::I(i), x, "-".into(), out, line);
                }
            }
            _ => unreachable!(),
        }
    }
    let (mut out, mut line, mut lines) = (String::new(), 1, BTreeMap::new());
    emit(v, 0, &mut vec![], &mut out, &mut line, &mut lines);
    (out, lines)
}

// ---------------------------------------------------------------------------
// Scenarios

struct Scenario {
    name: &'static str,
    base: J,
}

fn seed() -> J {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/slurm_llama_3_1_8b_instruct.yaml"))
            .unwrap();
    config::yaml::parse(&text, SourceId(0)).unwrap().to_json()
}

fn merge(dst: &mut J, src: J) {
    match (dst, src) {
        (J::Object(d), J::Object(s)) => {
            for (k, v) in s {
                match d.get_mut(&k) {
                    Some(x) if x.is_object() && v.is_object() => merge(x, v),
                    _ => {
                        d.insert(k, v);
                    }
                }
            }
        }
        (d, s) => *d = s,
    }
}

fn with_deployment(group: &str) -> J {
    let mut s = seed();
    s["defaults"][1] = json!({ "deployment": group });
    s
}

/// The seed example and the built-in deployment groups, both topologies,
/// an auxiliary judge, several instances behind HAProxy, multi-node Ray and
/// an external endpoint. `OUT` stands for the sandbox's output folder.
fn scenarios() -> Vec<Scenario> {
    let pre = json!({ "evaluation": { "pre_cmd": "record-args pre ${deployment.served_model_name}" } });
    let mut seed_s = seed();
    merge(&mut seed_s, pre.clone());
    let mut shared = seed_s.clone();
    merge(&mut shared, json!({ "execution": { "topology": "shared" } }));
    let mut judge = seed_s.clone();
    judge["defaults"].as_array_mut().unwrap().insert(2, json!("deployment/vllm@auxiliary_deployments.judge"));
    merge(
        &mut judge,
        json!({
            "execution": { "mounts": { "auxiliary": { "judge": { "/adv/judge-cache": "/root/.cache" } } } },
            "auxiliary_deployments": { "judge": { "hf_model_handle": "Qwen/Qwen2.5-72B-Instruct", "served_model_name": "judge", "port": 8001 } },
            "evaluation": { "nemo_evaluator_config": { "config": { "params": { "extra": {
                "judge_url": "auxiliary_deployments.judge.chat_url",
                "judge_model": "auxiliary_deployments.judge.model_id" } } } } },
        }),
    );
    judge["evaluation"]["tasks"] = json!([{ "name": "hellaswag" }]);
    let mut haproxy = with_deployment("sglang");
    merge(&mut haproxy, pre.clone());
    merge(
        &mut haproxy,
        json!({
            "execution": {
                "num_nodes": 2, "num_instances": 2,
                "proxy": { "image": "haproxy:lts", "config": { "haproxy_port": 5009 } },
                "mounts": { "deployment": { "/adv/hf": "/root/.cache/huggingface" }, "evaluation": { "./data": "/data:ro" } },
            },
            "deployment": { "checkpoint_path": "/adv/ckpt", "hf_model_handle": null },
        }),
    );
    haproxy["evaluation"]["tasks"] = json!([{ "name": "hellaswag" }]);
    let one_task = |mut s: J, extra: J| {
        merge(&mut s, pre.clone());
        merge(&mut s, extra);
        s["evaluation"]["tasks"] = json!([{ "name": "hellaswag" }]);
        s
    };
    let trtllm = one_task(with_deployment("trtllm"), json!({}));
    let nim = one_task(
        with_deployment("nim"),
        json!({ "deployment": { "image": "nvcr.io/nim/meta/llama:1", "hf_model_handle": null } }),
    );
    let generic = one_task(
        with_deployment("generic"),
        json!({ "deployment": {
            "image": "example/server:1", "hf_model_handle": null,
            "command": "record-args generic ${deployment.served_model_name} ${deployment.extra_args}" } }),
    );
    let ray = one_task(with_deployment("vllm_ray"), json!({ "execution": { "num_nodes": 2 } }));
    let mut none = with_deployment("none");
    none["deployment"] = json!({});
    merge(
        &mut none,
        json!({
            "target": { "api_endpoint": { "url": "http://h:8000/v1/chat/completions", "model_id": "m", "api_key_name": "API_KEY" } },
            "evaluation": { "post_cmd": "record-args post" },
        }),
    );
    none["evaluation"]["tasks"] = json!([{ "name": "hellaswag" }]);
    let mut out = vec![
        Scenario { name: "seed_per_task", base: seed_s },
        Scenario { name: "shared", base: shared },
        Scenario { name: "auxiliary_judge", base: judge },
        Scenario { name: "sglang_haproxy", base: haproxy },
        Scenario { name: "trtllm", base: trtllm },
        Scenario { name: "nim", base: nim },
        Scenario { name: "generic", base: generic },
        Scenario { name: "vllm_ray", base: ray },
        Scenario { name: "external_endpoint", base: none },
    ];
    for s in &mut out {
        s.base["execution"]["output_dir"] = json!("OUT");
    }
    out
}

// ---------------------------------------------------------------------------
// Stand-ins

/// Records its argv (NUL-separated) as `cmd.<time>.<name>`.
const RECORDER: &str = r#"#!/bin/bash
{ printf '%s\0' "${0##*/}"; for a in "$@"; do printf '%s\0' "$a"; done; } >"$STUB_DIR/cmd.$EPOCHREALTIME.$$.${0##*/}"
exit 0
"#;

const STUBS: &[(&str, &str)] = &[
    (
        "srun",
        r#"#!/bin/bash
# Records argv and the container's variables, then runs the container
# command (what follows the options) here, as task 0.
n=$EPOCHREALTIME.$$
{ for a in "$@"; do printf '%s\0' "$a"; done; } >"$STUB_DIR/srun.$n.args"
for a in "$@"; do
  case $a in
    --container-env=*)
      IFS=, read -r -a names <<<"${a#--container-env=}"
      for v in "${names[@]}"; do printf '%s=%s\0' "$v" "${!v-<unset>}"; done >"$STUB_DIR/srun.$n.env"
      ;;
  esac
done
# The container's /results is the folder mounted there: paths below it in
# the command are read on the host, through a link whose own path holds no
# character the shell would act on (the folder's path may hold anything).
results=
for a in "$@"; do
  case $a in
    --container-mounts=*)
      IFS=, read -r -a ms <<<"${a#--container-mounts=}"
      for m in "${ms[@]}"; do [ "${m#*:}" = /results ] && results=${m%%:*}; done
      ;;
  esac
done
while [ $# -gt 0 ] && [ "${1#-}" != "$1" ]; do shift; done
export SLURM_PROCID=0
if [ -n "$results" ]; then
  link="$STUB_DIR/results.${n//[^0-9]/}"
  ln -sfn "$results" "$link"
  args=()
  for a in "$@"; do args+=("${a//\/results\//$link/}"); done
  set -- "${args[@]}"
fi
"$@"
rc=$?
: >"$STUB_DIR/srun.$n.done"
exit $rc
"#,
    ),
    (
        "curl",
        r#"#!/bin/bash
# Healthy once every step started so far has finished recording.
{ for a in "$@"; do printf '%s\0' "$a"; done; } >"$STUB_DIR/curl.$EPOCHREALTIME.$$"
for _ in $(seq 200); do
  busy=0
  for f in "$STUB_DIR"/srun.*.args; do
    [ -e "$f" ] && [ ! -e "${f%.args}.done" ] && busy=1
  done
  [ "$busy" = 0 ] && break
  command -p sleep 0.02
done
printf 200
"#,
    ),
    ("sleep", "#!/bin/bash\nexit 0\n"),
    ("hostname", "#!/bin/bash\necho node1\n"),
    ("scontrol", "#!/bin/bash\n[ \"$1 $2\" = 'show hostnames' ] && { tr ',' '\\n' <<<\"$3\"; exit 0; }\nexit 1\n"),
    ("sacct", "#!/bin/bash\nexit 1\n"),
    ("squeue", "#!/bin/bash\nexit 0\n"),
    ("scancel", "#!/bin/bash\nexit 0\n"),
    ("sbatch", "#!/bin/bash\necho 4242\n"),
    ("getent", "#!/bin/bash\nexit 2\n"),
    ("ray", "#!/bin/bash\n[ \"$1\" = status ] && printf ' 1 node_a\\n 1 node_b\\n 1 node_c\\n'\nexit 0\n"),
    ("mpirun", "#!/bin/bash\nwhile [ $# -gt 0 ] && [ \"${1#-}\" != \"$1\" ]; do shift; done\nexec \"$@\"\n"),
];

const RECORDED: &[&str] =
    &["vllm", "python3", "trtllm-serve", "nemo-evaluator", "eval-factory", "haproxy", "record-args"];

struct Sandbox {
    dir: PathBuf,
}

static SANDBOXES: AtomicUsize = AtomicUsize::new(0);

impl Sandbox {
    fn new() -> Sandbox {
        let n = SANDBOXES.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("evalctl-adv-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for d in ["bin", "rec", "canary", "out"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        let write = |name: &str, text: &str| {
            let p = dir.join("bin").join(name);
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        };
        for (name, text) in STUBS {
            write(name, text);
        }
        for name in RECORDED {
            write(name, RECORDER);
        }
        Sandbox { dir }
    }

    fn out(&self) -> String {
        self.dir.join("out").display().to_string()
    }

    fn run(&self, job: &RenderedJob) -> (i32, String) {
        std::fs::create_dir_all(&job.dir).unwrap();
        let script = Path::new(&job.dir).join(job.script_name);
        std::fs::write(&script, job.script.text()).unwrap();
        let path = format!("{}:{}", self.dir.join("bin").display(), std::env::var("PATH").unwrap_or_default());
        let out = Command::new("timeout")
            .arg("60")
            .arg("bash")
            .arg(&script)
            .env("PATH", path)
            .env("STUB_DIR", self.dir.join("rec"))
            .env("CANARY_DIR", self.dir.join("canary"))
            .env("SLURM_JOB_ID", "77")
            .env("SLURM_JOB_NODELIST", "node1,node2")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        (out.status.code().unwrap_or(-1), text)
    }

    /// Recorded calls whose file names start with `prefix`, in call order.
    fn calls(&self, prefix: &str, suffix: &str) -> Vec<(String, Vec<String>)> {
        let mut names: Vec<String> = std::fs::read_dir(self.dir.join("rec"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(prefix) && n.ends_with(suffix))
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|n| (n.clone(), nul_split(&std::fs::read(self.dir.join("rec").join(&n)).unwrap())))
            .collect()
    }

    fn canaries(&self) -> Vec<String> {
        std::fs::read_dir(self.dir.join("canary"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn nul_split(b: &[u8]) -> Vec<String> {
    let mut v: Vec<String> = b.split(|c| *c == 0).map(|s| String::from_utf8_lossy(s).into_owned()).collect();
    v.pop(); // after the last NUL
    v
}

// ---------------------------------------------------------------------------
// Loading until accepted

/// A value the config accepted, where it was written.
#[derive(Clone, Debug)]
struct Placed {
    field: Field,
    /// What the field holds (the payload, or `lit:` payload, ...).
    value: String,
    /// What should arrive (the payload).
    payload: String,
    /// Where it was written.
    path: Vec<P>,
}

struct Accepted {
    loaded: Loaded,
    rendered: Rendered,
    placed: Vec<Placed>,
    refused: Vec<(String, String)>,
    text: String,
}

fn headline(d: &Diagnostic, s: &Sources) -> String {
    d.headline(s)
}

/// Loads and renders `base` with each `(field, payload)`; a refusal must be
/// a located error at the line of an injected value, which is then taken
/// out. Returns what rendered, or why the test fails.
fn settle(base: &J, wanted: &[(Field, String)], out: &str) -> Result<Accepted, String> {
    let mut active: Vec<(Field, String)> = wanted.to_vec();
    let mut refused = vec![];
    for _ in 0..64 {
        let mut cfg = base.clone();
        cfg["execution"]["output_dir"] = json!(out);
        let mut placed: Vec<(Placed, Vec<P>)> = vec![];
        // Keys first: a new key copies a sibling's value from the scenario,
        // not one already holding a payload.
        let ordered = active.iter().filter(|(f, _)| f.as_key).chain(active.iter().filter(|(f, _)| !f.as_key));
        for (f, p) in ordered {
            let value = if f.label() == "execution.output_dir" {
                format!("{out}/{p}")
            } else if f.lit {
                format!("lit:{p}")
            } else {
                p.clone()
            };
            let text = if f.as_key { value.clone() } else { escaped(&value) };
            if let Some(path) = inject(&mut cfg, &f.pat, f.as_key, &text, &mut vec![]) {
                placed.push((Placed { field: f.clone(), value, payload: p.clone(), path: path.clone() }, path));
            }
        }
        let (text, lines) = to_yaml(&cfg);
        let sources = Sources::new();
        let name = format!("{}/adv.yaml", Path::new(out).parent().unwrap().display());
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| -> Result<(Loaded, Rendered), Vec<Diagnostic>> {
            let loaded =
                config::load_text(Path::new(&name), &text, &[], &sources, &|_| None).map_err(|f| f.diagnostics)?;
            let (graph, _) = evalctl::graph::build(&loaded)?;
            let rendered = render::render(&loaded, &graph)?;
            Ok((loaded, rendered))
        }));
        let diags = match result {
            Err(_) => return Err(format!("evalctl panicked on this config:\n{text}")),
            Ok(Ok((loaded, rendered))) => {
                let placed = placed.into_iter().map(|(p, _)| p).collect();
                return Ok(Accepted { loaded, rendered, placed, refused, text });
            }
            Ok(Err(d)) => d,
        };
        let mut remove = BTreeSet::new();
        for d in diags.iter().filter(|d| d.is_error()) {
            let h = headline(d, &sources);
            let Some(span) = d.span.filter(|s| sources.name(s.src) == name) else {
                return Err(format!("an error without a place in the config: {h}\nconfig:\n{text}"));
            };
            let mut hits: Vec<usize> = placed
                .iter()
                .enumerate()
                .filter(|(_, (_, path))| lines.get(path) == Some(&span.line))
                .map(|(i, _)| i)
                .collect();
            if hits.is_empty() {
                // An error about a whole mapping points at its start, the
                // line of its first key: the injected values inside it.
                let parents: Vec<&[P]> = lines
                    .iter()
                    .filter(|(p, l)| **l == span.line && !p.is_empty())
                    .map(|(p, _)| &p[..p.len() - 1])
                    .collect();
                hits = placed
                    .iter()
                    .enumerate()
                    .filter(|(_, (_, path))| parents.iter().any(|q| !q.is_empty() && path.starts_with(q)))
                    .map(|(i, _)| i)
                    .collect();
            }
            if hits.is_empty() {
                return Err(format!("an error not at the line of an injected value: {h}\nconfig:\n{text}"));
            }
            for i in hits {
                remove.insert(i);
                refused.push((placed[i].0.field.label(), h.clone()));
            }
        }
        if remove.is_empty() {
            return Err(format!("refused with no error:\n{text}"));
        }
        let gone: Vec<&Placed> = remove.iter().map(|i| &placed[*i].0).collect();
        active.retain(|(f, p)| !gone.iter().any(|g| g.field == *f && g.payload == *p));
    }
    Err("refusals did not converge".into())
}

// ---------------------------------------------------------------------------
// Running and checking

/// The run config template of a task script (the here-document's one line).
fn template(script: &str) -> J {
    let start = script.find("<<'EVALCTL_RUN_CONFIG_END'\n").expect("a run config") + 27;
    let end = start + script[start..].find("\nEVALCTL_RUN_CONFIG_END\n").unwrap();
    serde_json::from_str(&script[start..end]).expect("the run config template is JSON")
}

const URL_PLACEHOLDER: &str = "@@EVALCTL_ENDPOINT_URL@@";

/// `file` is `tmpl` with the endpoint URL filled in at
/// `target.api_endpoint.url` and auxiliary URLs at their references;
/// every other value verbatim.
fn same_but_urls(tmpl: &J, file: &J, path: &mut Vec<String>, errs: &mut Vec<String>) {
    match (tmpl, file) {
        (J::Object(a), J::Object(b)) => {
            if a.keys().collect::<Vec<_>>() != b.keys().collect::<Vec<_>>() {
                errs.push(format!("{}: keys differ: {:?} vs {:?}", path.join("."), a.keys(), b.keys()));
                return;
            }
            for (k, v) in a {
                path.push(k.clone());
                same_but_urls(v, &b[k], path, errs);
                path.pop();
            }
        }
        (J::Array(a), J::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                path.push(i.to_string());
                same_but_urls(x, y, path, errs);
                path.pop();
            }
        }
        (J::String(t), J::String(f))
            if (path.join(".") == "target.api_endpoint.url"
                && t.starts_with(URL_PLACEHOLDER.trim_end_matches('@')))
                || (t.starts_with("auxiliary_deployments.") && t.ends_with("url")) =>
        {
            if !f.starts_with("http://")
                || t.starts_with("auxiliary_deployments.") && f.contains("@@EVALCTL_ENDPOINT_URL")
            {
                errs.push(format!("{}: {f:?} is not the endpoint", path.join(".")));
            }
        }
        (a, b) if a == b => {}
        (a, b) => errs.push(format!("{}: {a} became {b}", path.join("."))),
    }
}

/// Flags evalctl writes, besides the config's `sbatch_extra_flags`.
const SBATCH_FLAGS: &[&str] = &[
    "job-name",
    "account",
    "partition",
    "qos",
    "time",
    "nodes",
    "ntasks-per-node",
    "gres",
    "gpus-per-node",
    "output",
    "open-mode",
    "no-requeue",
    "kill-on-invalid-dep",
    "signal",
];

/// The `#SBATCH` header: only known lines, each value one well-formed
/// word; returns `{flag: value}` (values unquoted).
fn header(job: &RenderedJob, extra: &[String], errs: &mut Vec<String>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in job.script.text().lines().take_while(|l| l.starts_with('#')) {
        let Some(rest) = line.strip_prefix("#SBATCH --") else {
            if !(line == "#!/bin/bash" || line.starts_with("# shellcheck ") || line.starts_with("# evalctl job ")) {
                errs.push(format!("{}: unexpected header line {line:?}", job.id));
            }
            continue;
        };
        let (flag, value) = rest.split_once('=').unwrap_or((rest, ""));
        if !SBATCH_FLAGS.contains(&flag) && !extra.iter().any(|e| e == flag) {
            errs.push(format!("{}: unexpected #SBATCH flag in {line:?}", job.id));
        }
        let value = match value.strip_prefix('"') {
            Some(v) => match v.strip_suffix('"') {
                Some(inner) if !inner.contains('"') => inner.to_owned(),
                _ => {
                    errs.push(format!("{}: badly quoted #SBATCH value {line:?}", job.id));
                    continue;
                }
            },
            None if value.contains([' ', '\t', '"', '\'', '#']) => {
                errs.push(format!("{}: unquoted #SBATCH value {line:?}", job.id));
                continue;
            }
            None => value.to_owned(),
        };
        out.insert(flag.to_owned(), value);
    }
    out
}

fn after<'a>(argv: &'a [String], flag: &str) -> Option<&'a String> {
    argv.iter().position(|a| a == flag).and_then(|i| argv.get(i + 1))
}

fn contains_run(hay: &[String], needle: &[String]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

/// Runs the scripts of `acc` and checks every destination; returns the
/// problems found.
fn run_and_check(sb: &Sandbox, acc: &Accepted, all_tasks: bool) -> Vec<String> {
    let mut errs = vec![];
    let cfg = &acc.loaded.config;
    let r = &acc.rendered;
    let by_label = |l: &str| acc.placed.iter().find(|p| p.field.label() == l);
    let extra_flags: Vec<String> = cfg.execution.sbatch_extra_flags.keys().cloned().collect();
    let kind = cfg.deployment.kind.as_str();

    // Every script: bash reads it, and its header holds only known lines.
    for j in &r.jobs {
        let n = Command::new("bash").arg("-n").arg("-c").arg(j.script.text()).output().unwrap();
        if !n.status.success() {
            errs.push(format!("{}: bash -n: {}", j.id, String::from_utf8_lossy(&n.stderr)));
        }
        let h = header(j, &extra_flags, &mut errs);
        for (label, flag) in [
            ("execution.account", "account"),
            ("execution.partition", "partition"),
            ("execution.qos", "qos"),
            ("execution.gres", "gres"),
        ] {
            if let Some(p) = by_label(label)
                // (a job that only runs a client asks for no GPUs: no --gres)
                && h.contains_key(flag)
                && h.get(flag) != Some(&p.value)
            {
                errs.push(format!("{}: --{flag} is {:?}, want {:?}", j.id, h.get(flag), p.value));
            }
        }
        // The comment goes verbatim on sbatch's command line, never in a header line.
        if let Some(p) = by_label("execution.sbatch_comment")
            && (j.comment.as_deref() != Some(p.value.as_str()) || h.contains_key("comment"))
        {
            errs.push(format!("{}: the comment is {:?} (header: {:?})", j.id, j.comment, h.get("comment")));
        }
        let name = evalctl::remote::layout::job_name(
            by_label("execution.subproject").map(|p| p.value.as_str()),
            &acc.loaded.stack,
            &j.unit,
            j.role,
        );
        if h.get("job-name") != Some(&name) || j.job_name != name {
            errs.push(format!("{}: --job-name is {:?}, want {name:?}", j.id, h.get("job-name")));
        }
    }

    // Run the deployment jobs, publish endpoints, then each task's first link.
    let servers: Vec<&RenderedJob> = r.jobs.iter().filter(|j| j.role == render::Role::Server).collect();
    for j in &servers {
        let (_, log) = sb.run(j);
        if log.contains("syntax error") || log.contains("command not found") {
            errs.push(format!("{}: {log}", j.id));
        }
    }
    // The tasks run against a live server (its stand-in ended above).
    for j in &servers {
        std::fs::write(Path::new(&j.dir).join("endpoint"), "http://node9:8000\n").unwrap();
        std::fs::write(Path::new(&j.dir).join("status"), "running 76 \n").unwrap();
    }
    let mut tasks: Vec<&RenderedJob> = r.jobs.iter().filter(|j| j.role == render::Role::First).collect();
    if !all_tasks {
        // The other tasks' scripts differ only in names (checked above).
        tasks.truncate(1);
    }
    for (ti, j) in tasks.iter().enumerate() {
        let (rc, log) = sb.run(j);
        if rc != 0 {
            errs.push(format!("{}: exit {rc}\n{log}", j.id));
        }
        // The run config the harness reads: JSON, verbatim but for URLs.
        let file = Path::new(&j.dir).join("artifacts/run_config.yml");
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        match serde_json::from_str::<J>(&text) {
            Err(e) => errs.push(format!("{}: run config is not JSON ({e}): {text}", j.id)),
            Ok(rc_json) => {
                let tmpl = template(&j.script.text());
                same_but_urls(&tmpl, &rc_json, &mut vec![], &mut errs);
                let ep = &rc_json["target"]["api_endpoint"];
                let url = ep["url"].as_str().unwrap_or_default();
                if let Some(p) = by_label("target.api_endpoint.url")
                    && cfg.deployment.kind.as_str() == "none"
                    && url != p.value
                {
                    errs.push(format!("{}: endpoint url {url:?}, want {:?}", j.id, p.value));
                }
                let eps = cfg.deployment.endpoints.clone().unwrap_or_default();
                if cfg.deployment.kind.as_str() != "none" {
                    let paths =
                        [eps.chat, eps.completions, eps.embedding, eps.ranking, Some("/v1/chat/completions".into())];
                    if !paths.iter().flatten().any(|p| url.ends_with(p.as_str())) {
                        errs.push(format!("{}: endpoint url {url:?} ends with no endpoint path", j.id));
                    }
                }
                if let Some(k) = &cfg.target.api_endpoint.api_key_name
                    && ep["api_key_name"] != json!(k)
                {
                    errs.push(format!("{}: api_key_name {}, want {k:?}", j.id, ep["api_key_name"]));
                }
                for label in ["target.api_endpoint.model_id", "deployment.served_model_name"] {
                    if let Some(p) = by_label(label)
                        && ep["model_id"] != json!(p.value)
                        && (label.starts_with("target") || cfg.target.api_endpoint.model_id.is_none())
                    {
                        errs.push(format!("{}: model_id {}, want {:?}", j.id, ep["model_id"], p.value));
                    }
                }
                // A task's settings win over the evaluation's.
                let setting = by_label("evaluation.tasks[].nemo_evaluator_config.<any>")
                    .filter(|_| ti == 0)
                    .or_else(|| by_label("evaluation.nemo_evaluator_config.<any>"));
                if let Some(p) = setting
                    && rc_json["adv-key"] != json!(p.value)
                {
                    errs.push(format!("{}: run config adv-key {}, want {:?}", j.id, rc_json["adv-key"], p.value));
                }
            }
        }
    }

    // What the steps were given.
    let sruns = sb.calls("srun.", ".args");
    let mut allowed: BTreeSet<String> = BTreeSet::new();
    let e = &cfg.execution;
    for m in [&e.mounts.deployment, &e.mounts.evaluation].into_iter().chain(e.mounts.auxiliary.values()) {
        for (s, d) in m {
            allowed.insert(format!("{s}:{d}"));
        }
    }
    for d in std::iter::once(&cfg.deployment).chain(cfg.auxiliary_deployments.values()) {
        if let Some(cp) = &d.checkpoint_path {
            allowed.insert(format!("{cp}:/checkpoint:ro"));
        }
        if let Some(cache) = &d.cache_path {
            allowed.insert(format!("{cache}:/cache"));
        }
    }
    for t in &cfg.evaluation.tasks {
        if let Some(dir) = &t.dataset_dir {
            allowed.insert(format!("{dir}:{}", t.dataset_mount_path.as_deref().unwrap_or("/datasets")));
        }
    }
    for j in &r.jobs {
        allowed.insert(format!("{}/artifacts:/results", j.dir));
        allowed.insert(format!("{}/haproxy-77.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro", j.dir));
    }
    let mut images = BTreeSet::new();
    let mut env_values = BTreeSet::new();
    for (name, argv) in &sruns {
        for a in argv {
            if let Some(list) = a.strip_prefix("--container-mounts=") {
                for entry in list.split(',') {
                    if !allowed.contains(entry) {
                        errs.push(format!("srun mount {entry:?} is not one of the config's ({list:?})"));
                    }
                }
            }
            if let Some(img) = a.strip_prefix("--container-image=") {
                images.insert(img.to_owned());
            }
        }
        let env_file = sb.dir.join("rec").join(name.replace(".args", ".env"));
        for kv in std::fs::read(env_file).map(|b| nul_split(&b)).unwrap_or_default() {
            if let Some((_, v)) = kv.split_once('=') {
                env_values.insert(v.to_owned());
            }
        }
    }
    for (label, image) in [
        ("deployment.image", cfg.deployment.image.clone()),
        ("evaluation.tasks[].container", cfg.evaluation.tasks[0].container.clone()),
        ("execution.proxy.image", e.proxy.as_ref().and_then(|p| p.image.clone()).filter(|_| e.num_instances > 1)),
    ] {
        if let (Some(p), Some(img)) = (by_label(label), image)
            && cfg.deployment.kind.as_str() != "none"
            && img == p.value
            && !images.contains(&img)
        {
            errs.push(format!("{label}: no step got --container-image={img:?}: {images:?}"));
        }
    }
    // Literal variables reach the containers of their group (a variable of
    // the same name set at another level for the same container wins).
    for p in acc.placed.iter().filter(|p| p.field.lit) {
        let var = p.path.last();
        let overwritten = acc.placed.iter().skip_while(|q| !std::ptr::eq(*q, p)).skip(1).any(|q| q.path == p.path);
        let shadowed =
            overwritten || acc.placed.iter().any(|q| q.field.lit && q.path.last() == var && q.payload != p.payload);
        let server_side = p.field.under("deployment") || p.field.under("auxiliary_deployments");
        // The older dialect's values are secrets: `apply` writes them.
        let secret = p.field.under("execution");
        let nowhere = shadowed || secret || (server_side && kind == "none");
        if !nowhere && !env_values.contains(&p.payload) {
            errs.push(format!("{}: no container got the value {:?}", p.field.label(), p.payload));
        }
    }

    // The server commands: values interpolated into them are single words.
    let cmds = sb.calls("cmd.", "");
    let port = cfg.deployment.port.unwrap_or(8000).to_string();
    let server = cmds
        .iter()
        .map(|(_, a)| a)
        .find(|a| matches!(a[0].as_str(), "vllm" | "python3" | "trtllm-serve") && after(a, "--port") == Some(&port));
    if matches!(kind, "vllm" | "sglang" | "trtllm") && !matches!(cfg.execution.topology.as_str(), "shared") {
        match server {
            None => errs.push(format!("no server command ran: {cmds:?}")),
            Some(argv) => {
                let d = &cfg.deployment;
                let name_flag = if kind == "trtllm" { None } else { Some("--served-model-name") };
                if let (Some(flag), Some(name)) = (name_flag, &d.served_model_name)
                    && after(argv, flag) != Some(name)
                {
                    errs.push(format!("served model name {name:?} did not arrive as one argument: {argv:?}"));
                }
                let model = d.hf_model_handle.clone().unwrap_or_else(|| "/checkpoint".into());
                let model_flag = match kind {
                    "vllm" => "serve",
                    "sglang" => "--model-path",
                    _ => "serve",
                };
                if after(argv, model_flag) != Some(&model) {
                    errs.push(format!("model {model:?} did not arrive as one argument: {argv:?}"));
                }
                if let Some(x) = &d.extra_args {
                    let words = shlex::split(x).unwrap_or_default();
                    if !contains_run(argv, &words) {
                        errs.push(format!("extra_args {x:?} did not arrive as the words {words:?}: {argv:?}"));
                    }
                }
                if let Some(b) = &d.distributed_executor_backend
                    && d.command.as_deref().is_some_and(|c| c.contains("--distributed-executor-backend"))
                    && after(argv, "--distributed-executor-backend") != Some(b)
                {
                    errs.push(format!("backend {b:?} did not arrive as one argument: {argv:?}"));
                }
            }
        }
    }
    for (_, argv) in &cmds {
        if matches!(argv[0].as_str(), "record-args") && argv.get(1).is_some_and(|w| w == "pre" || w == "generic") {
            let want = cfg.deployment.served_model_name.clone().unwrap_or_default();
            if argv.get(2) != Some(&want) {
                errs.push(format!(
                    "{}: the served model name arrived as {:?}, want one word {want:?}",
                    argv[1],
                    &argv[2..]
                ));
            }
            if argv[1] == "generic" {
                let words = shlex::split(cfg.deployment.extra_args.as_deref().unwrap_or("")).unwrap_or_default();
                if argv[3..] != words[..] {
                    errs.push(format!("generic: extra_args arrived as {:?}, want {words:?}", &argv[3..]));
                }
            }
        }
    }

    // Health checks and the HAProxy configuration.
    let health = cfg.deployment.endpoints.as_ref().and_then(|x| x.health.clone());
    let curls = sb.calls("curl.", "");
    if let (Some(h), Some(p)) = (&health, by_label("deployment.endpoints.health"))
        && h == &p.value
        && kind != "none"
        && cfg.execution.topology.as_str() != "shared"
        && !curls.iter().any(|(_, a)| {
            a.last().is_some_and(|u| u.ends_with(&format!(":{}{h}", cfg.deployment.port.unwrap_or(8000))))
        })
    {
        errs.push(format!("no health check of {h:?}: {curls:?}"));
    }
    for j in &r.jobs {
        let Ok(text) = std::fs::read_to_string(Path::new(&j.dir).join("haproxy-77.cfg")) else { continue };
        for line in text.lines() {
            let ok = [
                "global",
                "  maxconn 8192",
                "defaults",
                "  mode http",
                "  timeout connect 10s",
                "  timeout client 100000s",
                "  timeout server 100000s",
                "frontend evalctl",
                "  default_backend models",
                "backend models",
                "  balance leastconn",
                "  option http-server-close",
                "  http-check expect status 200",
            ]
            .contains(&line)
                || line.strip_prefix("  bind *:").is_some_and(|p| p.parse::<u16>().is_ok())
                || line
                    .strip_prefix("  option httpchk GET ")
                    .is_some_and(|p| Some(p) == health.as_deref() && !p.contains(char::is_whitespace))
                || (line.starts_with("  server instance") && line.ends_with(" check") && line.split(' ').count() == 6);
            if !ok {
                errs.push(format!("{}: HAProxy line {line:?} is not evalctl's\n{text}", j.id));
            }
        }
    }

    let canaries = sb.canaries();
    if !canaries.is_empty() {
        errs.push(format!("injected commands ran: {canaries:?}"));
    }
    errs
}

/// One case: `wanted` values in scenario `sc`: how many values were
/// accepted and refused, or the config and the problems found.
fn case(sc: &Scenario, wanted: &[(Field, String)], all_tasks: bool) -> Result<(usize, usize), String> {
    let sb = Sandbox::new();
    let acc = settle(&sc.base, wanted, &sb.out()).map_err(|why| format!("scenario {}: {why}", sc.name))?;
    let errs = run_and_check(&sb, &acc, all_tasks);
    if !errs.is_empty() {
        let accepted: Vec<String> = acc.placed.iter().map(|p| p.field.label()).collect();
        return Err(format!(
            "scenario {}: {} problem(s):\n{}\n\naccepted fields: {accepted:?}\nconfig:\n{}",
            sc.name,
            errs.len(),
            errs.join("\n"),
            acc.text
        ));
    }
    Ok((acc.placed.len(), acc.refused.len()))
}

#[test]
fn the_schema_enumeration_finds_the_fields() {
    let labels: Vec<String> = fields().iter().map(Field::label).collect();
    for want in [
        "deployment.served_model_name",
        "deployment.hf_model_handle",
        "deployment.endpoints.health",
        "deployment.extra_args",
        "target.api_endpoint.url",
        "execution.mounts.deployment.<key>",
        "execution.mounts.deployment.<key>(key)",
        "auxiliary_deployments.<key>.served_model_name",
        "evaluation.tasks[].container",
        "evaluation.nemo_evaluator_config.<any>",
        "execution.proxy.config.health_check_path",
        "env_vars.<key>(lit:)",
    ] {
        assert!(labels.iter().any(|l| l == want), "{want} not in {labels:#?}");
    }
    assert!(!labels.iter().any(|l| l.ends_with("command") || l.ends_with("pre_cmd")), "shell fields get no payload");
}

/// Scenarios that get every payload in every field; the others get a
/// rotation (field `i` takes payload `i + k` in their `k`-th case).
const FULL: &[&str] = &["seed_per_task", "auxiliary_judge", "sglang_haproxy", "external_endpoint"];
const ROTATIONS: usize = 5;

/// Every field × every payload (refusals are taken out one located error
/// at a time): in the seed example, with an auxiliary judge, behind
/// HAProxy and against an external endpoint, all fields taking the same
/// payload at once; rotated payloads in the other scenarios.
#[test]
fn every_field_takes_every_payload() {
    let fields = fields();
    let scenarios = scenarios();
    let mut jobs: Vec<(usize, Vec<(Field, String)>)> = vec![];
    for (s, sc) in scenarios.iter().enumerate() {
        if FULL.contains(&sc.name) {
            for p in 0..PAYLOADS.len() {
                jobs.push((s, fields.iter().map(|f| (f.clone(), payload(p))).collect()));
            }
        } else {
            for k in 0..ROTATIONS {
                let wanted = fields.iter().enumerate().map(|(i, f)| (f.clone(), payload((i + k * 7) % PAYLOADS.len())));
                jobs.push((s, wanted.collect()));
            }
        }
    }
    let next = AtomicUsize::new(0);
    let totals = std::sync::Mutex::new((0, 0, Vec::<String>::new()));
    let started = std::time::Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((s, wanted)) = jobs.get(i) else { break };
                    let result = case(&scenarios[*s], wanted, false);
                    let mut t = totals.lock().unwrap();
                    match result {
                        Ok((a, r)) => {
                            t.0 += a;
                            t.1 += r;
                        }
                        Err(e) => t.2.push(e),
                    }
                }
            });
        }
    });
    let (a, r, failures) = std::mem::take(&mut *totals.lock().unwrap());
    eprintln!("{} cases: {a} values accepted, {r} refused at their line, in {:?}", jobs.len(), started.elapsed());
    assert!(failures.is_empty(), "{} of {} cases failed:\n\n{}", failures.len(), jobs.len(), failures.join("\n\n"));
    assert!(a > 0 && r > 0);
}

/// Pieces of the random payloads.
fn nasty() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("'".to_owned()),
        Just("\"".to_owned()),
        Just("$(touch $CANARY_DIR/pwned-p)".to_owned()),
        Just("`touch $CANARY_DIR/pwned-q`".to_owned()),
        Just(";touch $CANARY_DIR/pwned-r;".to_owned()),
        Just("\n".to_owned()),
        Just("\r".to_owned()),
        Just("#".to_owned()),
        Just(",".to_owned()),
        Just(":".to_owned()),
        Just("=".to_owned()),
        Just("%".to_owned()),
        Just("\\".to_owned()),
        Just("{}".to_owned()),
        Just("*".to_owned()),
        Just(" ".to_owned()),
        Just("-".to_owned()),
        Just("/".to_owned()),
        Just("\u{202e}\u{200b}".to_owned()),
        Just("${X}".to_owned()),
        "[a-z0-9]{1,6}",
    ];
    prop::collection::vec(piece, 1..8)
        .prop_map(|v| v.concat())
        .prop_filter("`\\${` is the config's escape", |s| !s.contains("\\${"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random payloads in a random choice of fields, in a random scenario.
    #[test]
    fn random_values_in_random_fields(s in 0usize..9, picks in prop::collection::vec((any::<prop::sample::Index>(), nasty()), 1..16)) {
        let fields = fields();
        let scenarios = scenarios();
        let mut wanted: Vec<(Field, String)> = vec![];
        for (i, p) in picks {
            let f = i.get(&fields).clone();
            if !wanted.iter().any(|(g, _)| *g == f) {
                wanted.push((f, p));
            }
        }
        if let Err(e) = case(&scenarios[s % scenarios.len()], &wanted, true) {
            panic!("{e}");
        }
    }
}
