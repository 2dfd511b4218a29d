# Part of tests/launcher_parity.rs: runs nemo-evaluator-launcher's Slurm dry
# run for each config and reduces both tools' sbatch scripts to facts.
#
# Input (stdin, JSON): a list of
#   {"name", "config", "overrides": [...],
#    "evalctl": {"tasks": [JOB], "aux": {NAME: JOB}}}
# where JOB is {"script": TEXT, "secrets": {GROUP: [NAME, ...]}}; tasks in
# the order of `evaluation.tasks`.
# Output (stdout, JSON): {NAME: {"error": TEXT} or
#   {"tasks": [{"dir": TASK FOLDER, "launcher": FACTS, "evalctl": FACTS}]}}
# where FACTS maps a fact name to a canonical JSON text.
#
# The launcher runs in this process: its CLI does `RunConfig.from_hydra` and
# `run_eval(cfg, dry_run=True)`, which writes every task's `run.sub` into a
# temporary folder and prints it; we keep the folder instead of parsing the
# printout. Starting Python and the launcher once for all configs saves
# ~10 s per config.

import base64
import contextlib
import copy
import io
import json
import os
import re
import shlex
import shutil
import sys
import tempfile
import traceback
from pathlib import Path
from urllib.parse import urlparse

import yaml

WANT = sys.argv[1]

# Speed only: the launcher parses its task catalogue (a 10 MB YAML file) with
# the pure-Python loader at every lookup, ~10 s a time on a slow machine.
yaml.safe_load = lambda stream: yaml.load(stream, Loader=yaml.CSafeLoader)

from importlib.metadata import version  # noqa: E402

if version("nemo-evaluator-launcher") != WANT:
    sys.exit(f"nemo-evaluator-launcher {version('nemo-evaluator-launcher')} is installed, not {WANT}")

import nemo_evaluator_launcher.api.functional as functional  # noqa: E402
from nemo_evaluator_launcher.api.types import RunConfig  # noqa: E402
from nemo_evaluator_launcher.common import mapping  # noqa: E402
from nemo_evaluator_launcher.common.override_sugar import (  # noqa: E402
    apply_task_name_overrides,
    partition_overrides,
)
from nemo_evaluator_launcher.executors.slurm import executor as slurm  # noqa: E402

_load_mapping = mapping.load_tasks_mapping
_mapping_cache = {}


def _cached_mapping(mapping_toml=None, *, from_container=None):
    if mapping_toml is not None or from_container is not None:
        return _load_mapping(mapping_toml, from_container=from_container)
    if "packaged" not in _mapping_cache:
        _mapping_cache["packaged"] = _load_mapping()
    return copy.deepcopy(_mapping_cache["packaged"])


for _module in (mapping, functional, slurm):
    _module.load_tasks_mapping = _cached_mapping


# ---------------------------------------------------------------- dry run


def launcher_dry_run(config, overrides, keep):
    """The `run.sub` of every task, in task order, as the CLI's --dry-run writes them."""

    class Kept:
        def __enter__(self):
            return keep

        def __exit__(self, *exc):
            return False

    slurm.tempfile.TemporaryDirectory = lambda *a, **k: Kept()
    hydra_overrides, sugar = partition_overrides(overrides)
    for _ in range(50):
        try:
            cfg = RunConfig.from_hydra(config=config, hydra_overrides=hydra_overrides)
            if sugar:
                cfg = apply_task_name_overrides(cfg, sugar)
            with contextlib.redirect_stdout(io.StringIO()):
                functional.run_eval(cfg, dry_run=True)
            break
        except Exception as e:  # a host variable the config reads: give it a value, retry
            m = re.search(r"Environment variable '([A-Za-z_][A-Za-z0-9_]*)'", str(e))
            if not m or m.group(1) in os.environ:
                raise
            os.environ[m.group(1)] = f"value-of-{m.group(1)}"
            for child in Path(keep).iterdir():
                shutil.rmtree(child)
    (rundir,) = Path(keep).iterdir()
    tasks = sorted(rundir.iterdir(), key=lambda p: int(p.name.rsplit(".", 1)[1]))
    return [(p.name, (p / "run.sub").read_text()) for p in tasks]


# ---------------------------------------------------------------- helpers


def canon(v):
    return json.dumps(v, sort_keys=True, separators=(",", ":"))


def commands(script):
    """Logical shell lines, as words: a line and the next ones until its
    quotes close, backslash-newlines joined, comments dropped."""
    out, buf = [], ""
    for line in script.split("\n"):
        buf = f"{buf}\n{line}" if buf else line
        try:
            words = shlex.split(buf.replace("\\\n", " "), comments=True)
        except ValueError:
            continue
        out.append((buf, words))
        buf = ""
    return out


def sbatch_header(script, task_dir):
    facts = {}
    for line in script.split("\n")[1:]:
        if not line.startswith("#"):
            if line.strip():
                break
            continue
        if not line.startswith("#SBATCH"):
            continue
        arg = line[len("#SBATCH") :].strip()
        m = re.match(r"--([A-Za-z0-9-]+)(?:[= ](.*))?$", arg)
        if not m:
            facts[f"sbatch.{arg}"] = canon(True)
            continue
        value = m.group(2)
        if value is not None:
            value = shlex.split(value)[0] if value.strip() else ""
            value = value.replace(task_dir, "$TASK_DIR")
        facts[f"sbatch.{m.group(1)}"] = canon(True if value is None else value)
    return facts


SRUN_FLAGS = {"--overlap", "--no-container-mount-home", "--container-mount-home", "--exclusive"}


def srun_parts(words):
    """Options (name -> value) and the command of an `srun` word list."""
    opts, i = {}, 1
    while i < len(words) and words[i].startswith("-"):
        w = words[i]
        if "=" in w:
            k, v = w.split("=", 1)
            opts[k] = v
            i += 1
        elif w in SRUN_FLAGS:
            opts[w] = True
            i += 1
        else:
            opts[w] = words[i + 1]
            i += 2
    cmd = words[i:]
    if cmd and cmd[-1] == "&":
        cmd = cmd[:-1]
    return opts, cmd


def mounts(opts, task_dir):
    found = [m.replace(task_dir, "$TASK_DIR") for m in (opts.get("--container-mounts") or "").split(",") if m]
    return sorted(found)


def home(opts):
    if opts.get("--no-container-mount-home"):
        return "no"
    if opts.get("--container-mount-home"):
        return "yes"
    return "pyxis default"


def env_list(opts):
    return {n for n in (opts.get("--container-env") or "").split(",") if n}


OPERATORS = {";", "&&", "||", "|", "&", "(", ")", ";;"}


def simple_commands(text):
    """The simple commands of a shell text, as words (comments dropped)."""
    out = []
    for line, _ in commands(text):
        lex = shlex.shlex(line.replace("\\\n", " "), posix=True, punctuation_chars=";&|()")
        lex.whitespace_split = True
        lex.commenters = "#"
        current = []
        for w in lex:
            if w in OPERATORS:
                out.append(current)
                current = []
            else:
                current.append(w)
        out.append(current)
    return [c for c in out if c]


def server_command(kind, text, facts):
    """`KIND.argv...` of the model server's command. A command that is a
    shell script (Ray's setup, say) is reduced to the last simple command
    given a `--port`, the server's; the others are `KIND.setup`."""
    cmds = simple_commands(text)
    serving = [i for i, c in enumerate(cmds) if any(w == "--port" or w.startswith("--port=") for w in c)]
    i = serving[-1] if serving else len(cmds) - 1
    words = cmds[i]
    if words[:1] == ["exec"]:
        words = words[1:]
    if len(cmds) == 1 and words[:2] == ["bash", "-c"] and len(words) == 3:
        return server_command(kind, words[2], facts)
    add_argv(facts, kind, words)
    if len(cmds) > 1:
        facts[f"{kind}.setup"] = canon([" ".join(c) for j, c in enumerate(cmds) if j != i])


def b64_file(script, filename):
    m = re.search(r'echo "([A-Za-z0-9+/=]*)" \| base64 -d > ' + re.escape(filename) + r"(?:\s|$)", script)
    return None if m is None else base64.b64decode(m.group(1)).decode()


def aux_refs(value, table):
    """Replaces auxiliary-endpoint references (each tool writes its own) by `<name.field>`."""
    if isinstance(value, dict):
        return {k: aux_refs(v, table) for k, v in value.items()}
    if isinstance(value, list):
        return [aux_refs(v, table) for v in value]
    if isinstance(value, str):
        return table.get(value, value)
    return value


def run_config_facts(rc, endpoint):
    facts = {}
    rc = {k: v for k, v in rc.items() if k != "metadata"}  # the launcher's record of itself
    cfg = dict(rc.pop("config", None) or {})
    target = dict(rc.pop("target", None) or {})
    ep = dict(target.pop("api_endpoint", None) or {})
    ep.pop("url", None)
    facts["harness.endpoint.url"] = canon(endpoint)
    facts["harness.endpoint.type"] = canon(ep.pop("type", None))
    facts["harness.endpoint.model_id"] = canon(ep.pop("model_id", None))
    for k, v in ep.items():
        facts[f"harness.endpoint.{k}"] = canon(v)
    for k, v in target.items():
        facts[f"harness.target.{k}"] = canon(v)
    facts["harness.params"] = canon(cfg.pop("params", None) or {})
    for k, v in cfg.items():
        facts[f"harness.config.{k}"] = canon(v)
    for k, v in rc.items():
        facts[f"harness.run_config.{k}"] = canon(v)
    return facts


def endpoint_of(url):
    """`<deployment>/path` for the task's own deployment, else the URL."""
    u = urlparse(url)
    if u.hostname == "127.0.0.1":
        return "<deployment>" + u.path
    return url


def add_argv(facts, kind, words):
    """`KIND.argv`: the words before the first option (program, subcommand,
    model); `KIND.argv OPTION`: the values of each occurrence of an option,
    `--opt=value` split as the program's argument parser does. The order of
    distinct options does not matter to the servers' parsers; that of
    repeated ones does, and is kept."""
    i = next((i for i, w in enumerate(words) if w.startswith("-")), len(words))
    facts[f"{kind}.argv"] = canon(words[:i])
    options = {}
    for w in words[i:]:
        if w.startswith("-") and not re.match(r"-\d", w):
            name, eq, value = w.partition("=")
            options.setdefault(name, []).append([value] if eq else [])
        else:
            options[name][-1].append(w)
    for name, values in options.items():
        facts[f"{kind}.argv {name}"] = canon(values)


def add_env(facts, kind, names, listed):
    """`KIND.env NAME`: the container gets variable NAME (values are never
    compared): `--container-env` when srun lists it there (its value then
    replaces one the image sets), else `inherited` (the image's wins)."""
    for n in names:
        facts[f"{kind}.env {n}"] = canon("--container-env" if n in listed else "inherited")


def add_mounts(facts, kind, found):
    """`KIND.mount TARGET`: what is mounted there (source and flags)."""
    for m in found:
        source, _, rest = m.partition(":")
        target, _, flags = rest.partition(":")
        facts[f"{kind}.mount {target}"] = canon(source + (":" + flags if flags else ""))


# ---------------------------------------------------------------- launcher


def launcher_facts(script):
    task_dir = re.search(r'^TASK_DIR="([^"]*)"', script, re.M).group(1)
    facts = sbatch_header(script, task_dir)
    exported = set(re.findall(r"^export ([A-Z_][A-Z0-9_]*)=", script, re.M))
    lines = commands(script)
    aux_table = {}
    for _, words in lines:
        if words[:1] != ["srun"] or "--container-image" not in words and not any(
            w.startswith("--container-image=") for w in words
        ):
            continue
        opts, cmd = srun_parts(words)
        out = os.path.basename(opts.get("--output", ""))
        image = opts["--container-image"]
        if out.startswith("server-"):
            kind = "server"
            body = cmd[2]
            text = b64_file(body, "deployment_cmd.sh")
            # `deployment.pre_cmd` is sourced in the same shell just before.
            pre = b64_file(body, "deployment_pre_cmd.sh")
            server_command("server", f"{pre}\n{text}" if pre else text, facts)
            m = re.match(r"export ([^&]*)&&", body)
            inner = {w.split("=")[0] for w in m.group(1).split()} if m else set()
            add_env(facts, "server", env_list(opts) | inner, env_list(opts))
            m = re.search(r"for \(\(g=0; g<(\d+); g\+\+\)\)", script)
            facts["server.instances"] = canon(int(m.group(1)))
            facts["server.srun"] = canon({"nodes": int(opts["--nodes"]), "ntasks": int(opts["--ntasks"])})
            facts["server.srun --mpi"] = canon(opts.get("--mpi"))
        elif re.match(r"[a-z0-9_]+-server-", out):
            name = out.split("-server-")[0]
            kind = f"aux.{name}"
            if cmd[:2] == ["bash", "-c"]:
                text = b64_file(cmd[2], "deployment_cmd.sh") or cmd[2]
                server_command(kind, text, facts)
            else:
                add_argv(facts, kind, cmd)
            add_env(facts, kind, env_list(opts), env_list(opts))
            facts[f"{kind}.srun"] = canon({"nodes": int(opts["--nodes"]), "ntasks": int(opts["--ntasks"])})
            facts[f"{kind}.srun --mpi"] = canon(opts.get("--mpi"))
        elif out.startswith("client-"):
            kind = "harness"
            body = cmd[2]
            rc = yaml.safe_load(b64_file(body, "config_ef.yaml"))
            # `${JUDGE_CHAT_URL}` style references the script fills in at run time.
            for m in re.finditer(r'^export (([A-Z0-9_]+)_([A-Z0-9]+)_URL)="[^"]*"$', script, re.M):
                aux_table["${" + m.group(1) + "}"] = f"<{m.group(2).lower()}.{m.group(3).lower()}_url>"
            rc = aux_refs(rc, aux_table)
            url = rc.get("target", {}).get("api_endpoint", {}).get("url")
            facts.update(run_config_facts(rc, endpoint_of(url)))
            env = env_list(opts)
            if "NEMO_EVALUATOR_DATASET_DIR" in exported:
                env.add("NEMO_EVALUATOR_DATASET_DIR")
            add_env(facts, "harness", env, env_list(opts))
            facts["harness.srun --mpi"] = canon(opts.get("--mpi"))
            for f in ("pre_cmd", "post_cmd"):
                text = (b64_file(body, f + ".sh") or "").strip()
                if text:
                    facts[f"harness.{f}"] = canon(text)
        elif out.startswith("proxy-"):
            kind = "proxy"
        else:
            continue
        facts[f"{kind}.image"] = canon(image)
        if kind != "proxy":
            add_mounts(facts, kind, mounts(opts, task_dir))
            facts[f"{kind}.mount_home"] = canon(home(opts))
    # The health waits: `TIMEOUT=N`, then a loop over the servers' addresses
    # (the model's on this node, or `${<PREFIX>_...}` for an auxiliary one).
    waits = re.finditer(
        r'^TIMEOUT=(\d+)\nELAPSED=0\nfor ip in "([^"]*)"; do\n.*?http://\$ip:(\d+)(/\S*)\)" != "200"', script, re.M | re.S
    )
    for m in waits:
        prefix = re.match(r"\$\{([A-Z0-9_]+?)_(?:PRIMARY_NODE|HEAD_NODE_IPS\[@\])\}$", m.group(2))
        kind = f"aux.{prefix.group(1).lower()}" if prefix else "server"
        facts[f"{kind}.port"] = canon(int(m.group(3)))
        facts[f"{kind}.health"] = canon(m.group(4))
        facts[f"{kind}.ready_timeout"] = canon(int(m.group(1)))
    return facts


# ---------------------------------------------------------------- evalctl


def public_env(script, group):
    m = re.search(r"^evalctl_public_env_" + re.escape(group) + r"\(\) \{\n(.*?)^\}", script, re.M | re.S)
    return set(re.findall(r"^\s*export ([A-Za-z_][A-Za-z0-9_]*)=", m.group(1), re.M)) if m else set()


def evalctl_server_facts(script, secrets, task_dir, facts):
    """Facts of every server a script starts: each `evalctl_start_servers KEY
    GROUP FIRST INSTANCES NODES TASKS [PREFIX]` line follows its own
    `EVALCTL_SRV_ARGS` and `EVALCTL_SRV_CMD`; `model` is the model's server,
    `aux-<name>` an auxiliary deployment's."""
    starts = list(re.finditer(r"^evalctl_start_servers (\S+) (\S+) (\d+) (\d+) (\d+) (\d+)(?: (\S+))?$", script, re.M))
    # Exported for each instance by evalctl_start_servers and in its `bash -c`.
    body = re.search(r"^evalctl_start_servers\(\) \{\n(.*?)^\}", script, re.M | re.S).group(1)
    prev = 0
    for start in starts:
        chunk = script[prev : start.start()]
        prev = start.end()
        key, group = start.group(1), start.group(2)
        kind = "server" if key == "model" else "aux." + key[len("aux-") :]
        args = re.search(r"^EVALCTL_SRV_ARGS=\((.*)\)$", chunk, re.M)
        cmd = next((w[0] for _, w in commands(chunk) if w and w[0].startswith("EVALCTL_SRV_CMD=")), None)
        if not (args and cmd):
            continue
        ready = re.search(
            r"^if ! evalctl_servers_ready " + re.escape(key) + r" (\d+) (\S*) (\d+) (\d+) (\S+); then$", script, re.M
        )
        opts, _ = srun_parts(["srun"] + shlex.split(args.group(1)))
        facts[f"{kind}.image"] = canon(opts["--container-image"])
        server_command(kind, cmd[len("EVALCTL_SRV_CMD=") :], facts)
        add_mounts(facts, kind, mounts(opts, task_dir))
        facts[f"{kind}.mount_home"] = canon(home(opts))
        runtime = set()
        prefix = start.group(7)
        for m in re.finditer(r"export ([^;'\n]*)", body):
            for w in m.group(1).split():
                w = w.strip('"')
                if w.startswith("${prefix}_"):
                    if prefix:
                        runtime.add(prefix + "_" + w[len("${prefix}_") :].split("=")[0])
                elif re.match(r"[A-Z_][A-Z0-9_]*=", w):
                    runtime.add(w.split("=")[0])
        names = env_list(opts) | public_env(script, group) | set(secrets.get(group, [])) | runtime
        add_env(facts, kind, names, env_list(opts))
        srun = re.search(r"^\s*exec (srun .*)$", body, re.M).group(1).rstrip(" \\")
        facts[f"{kind}.srun --mpi"] = canon(opts.get("--mpi") or srun_parts(shlex.split(srun))[0].get("--mpi"))
        instances, npi, tpi = (int(start.group(i)) for i in (4, 5, 6))
        facts[f"{kind}.srun"] = canon({"nodes": npi, "ntasks": tpi})
        if kind == "server":
            facts["server.instances"] = canon(instances)
        if ready:
            facts[f"{kind}.port"] = canon(int(ready.group(1)))
            facts[f"{kind}.health"] = canon(ready.group(2))
            facts[f"{kind}.ready_timeout"] = canon(int(ready.group(3)))
        if instances > 1 and ready and kind == "server":
            facts["proxy.image"] = canon(ready.group(5))


def evalctl_facts(job, aux):
    script = job["script"]
    task_dir = re.search(r"^export EVALCTL_DIR=(.*)$", script, re.M).group(1)
    facts = sbatch_header(script, task_dir)
    evalctl_server_facts(script, job["secrets"], task_dir, facts)
    for name, a in aux.items():
        adir = re.search(r"^export EVALCTL_DIR=(.*)$", a["script"], re.M).group(1)
        evalctl_server_facts(a["script"], a["secrets"], adir, facts)
    m = re.search(r"<<'EVALCTL_RUN_CONFIG_END'\n(.*?)\nEVALCTL_RUN_CONFIG_END\n", script, re.S)
    rc = json.loads(m.group(1))
    table = {}
    for name, field in re.findall(r"^evalctl_subst_url (auxiliary_deployments\.[^.\s]+)\.(\S+) ", script, re.M):
        table[f"{name}.{field}"] = f"<{name.split('.')[1]}.{field}>"
    rc = aux_refs(rc, table)
    url = re.search(r"^EVALCTL_URL=(.*)$", script, re.M)
    endpoint = rc.get("target", {}).get("api_endpoint", {}).get("url")
    if url and endpoint == "@@EVALCTL_ENDPOINT_URL@@":
        words = shlex.split(url.group(1))[0]
        endpoint = "<deployment>" + words[len("$EVALCTL_BASE_URL") :] if words.startswith("$EVALCTL_BASE_URL") else words
    facts.update(run_config_facts(rc, endpoint))
    for buf, words in commands(script):
        if "exec" in words and "srun" in words and "run_eval" in " ".join(words):
            opts, _ = srun_parts(words[words.index("srun") :])
            facts["harness.image"] = canon(opts["--container-image"])
            _, inner = srun_parts(words[words.index("srun") :])
            body = inner[2] if inner[:2] == ["bash", "-c"] else ""
            pre = re.search(r"^\{\n(.*?)\n\} \|\| exit \$\?$", body, re.M | re.S)
            post = re.search(r"^rc=\$\?\n[^\n]*\.evalctl-exit-[^\n]*\n\{\n(.*?)\n\}\nexit \$rc$", body, re.M | re.S)
            for name, m in (("pre_cmd", pre), ("post_cmd", post)):
                if m and m.group(1).strip():
                    facts[f"harness.{name}"] = canon(m.group(1).strip())
            add_mounts(facts, "harness", mounts(opts, task_dir))
            facts["harness.mount_home"] = canon(home(opts))
            names = env_list(opts) | public_env(script, "evaluation") | set(job["secrets"].get("evaluation", []))
            add_env(facts, "harness", names, env_list(opts))
            facts["harness.srun --mpi"] = canon(opts.get("--mpi"))
    return facts


# ---------------------------------------------------------------- main

out = {}
work = tempfile.mkdtemp(prefix="launcher-parity-")
for i, item in enumerate(json.load(sys.stdin)):
    keep = os.path.join(work, str(i))
    os.mkdir(keep)
    try:
        tasks = launcher_dry_run(item["config"], item["overrides"], keep)
    except Exception:
        out[item["name"]] = {"error": "the launcher's dry run failed:\n" + traceback.format_exc()}
        continue
    ev = item["evalctl"]
    if len(tasks) != len(ev["tasks"]):
        out[item["name"]] = {"error": f"{len(tasks)} launcher tasks, {len(ev['tasks'])} evalctl tasks"}
        continue
    result = []
    try:
        for (folder, script), job in zip(tasks, ev["tasks"]):
            result.append(
                {"dir": folder, "launcher": launcher_facts(script), "evalctl": evalctl_facts(job, ev["aux"])}
            )
    except Exception:
        out[item["name"]] = {"error": "fact extraction failed:\n" + traceback.format_exc()}
        continue
    out[item["name"]] = {"tasks": result}
shutil.rmtree(work, ignore_errors=True)
json.dump(out, sys.stdout)
