//! The `packed` topology without a cluster: tasks stay units while pack
//! jobs run them (graph, units, scripts), the tasks of a pack move together
//! in a plan (never a pack submitted twice, never a pack's live work lost),
//! and the apply program, run in bash against stand-in Slurm commands,
//! submits each pack once and records its jobs for every task.
//! The cluster runs packs end to end in `e2e_lifecycle` (scenarios 15, 16).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{FAKE_SLURM, run_with_fakes};

use evalctl::config;
use evalctl::diag::Sources;
use evalctl::plan::{self, Action, Observation, Planned, Seen, Targets};
use evalctl::remote::Replies;
use evalctl::remote::submit::{self, Inputs, SecretValues};
use evalctl::render::{self, Rendered};
use evalctl::state::{Observed, State, UnitState};

const NAMES: [&str; 5] = ["gsm8k", "hellaswag", "winogrande", "arc_challenge", "simple_evals.mmlu"];

/// Five tasks, two per job: packs `pack.t0` (t0, t1), `pack.t2` (t2, t3)
/// and `pack.t4` (t4).
fn config(output_dir: &str, per_job: u32) -> String {
    format!(
        "defaults: [{{execution: slurm/default}}, {{deployment: vllm}}, _self_]\n\
         name: pk\n\
         execution: {{hostname: login, account: a, output_dir: {output_dir}, topology: packed, tasks_per_job: {per_job}}}\n\
         deployment: {{hf_model_handle: org/model, served_model_name: model}}\n\
         evaluation:\n  tasks:\n{}",
        NAMES.iter().enumerate().map(|(i, name)| format!("    - {{name: {name}, id: t{i}}}\n")).collect::<String>()
    )
}

fn render_text(text: &str) -> Rendered {
    let sources = Sources::new();
    let loaded = config::load_text(Path::new("pk.yaml"), text, &[], &sources, &|_| None)
        .unwrap_or_else(|f| panic!("{}", evalctl::diag::render_all(&f.diagnostics, &sources)));
    let (graph, _) = evalctl::graph::build(&loaded).unwrap();
    render::render(&loaded, &graph).unwrap_or_else(|d| panic!("{}", evalctl::diag::render_all(&d, &sources)))
}

fn rendered(per_job: u32) -> Rendered {
    render_text(&config("/shared/out", per_job))
}

fn plan_with(r: &Rendered, observations: BTreeMap<String, Observation>, state: State) -> Planned<'_> {
    let seen = Seen { observations, state, target: "local".into(), offline: false, notes: vec![] };
    plan::make(r, 3, &[], &Targets::default(), seen)
}

fn action(p: &Planned<'_>, unit: &str) -> (Action, String) {
    let c = p.plan.changes.iter().find(|c| c.unit == unit).unwrap_or_else(|| panic!("no change for {unit}"));
    (c.action, c.reason.clone())
}

/// The state after an apply of the whole config: every task recorded with
/// its pack's jobs (`jobs[pack]`).
fn applied(r: &Rendered, jobs: &[(&str, Vec<u64>)]) -> State {
    let mut state = State::new(&r.stack);
    state.serial = 1;
    for u in plan::units(r) {
        let pack = u.pack.clone().unwrap();
        let ids = jobs.iter().find(|(p, _)| *p == pack).map(|(_, j)| j.clone()).unwrap_or_default();
        state.units.insert(
            u.id.clone(),
            UnitState {
                script_hash: u.script_hash.clone(),
                result_hash: u.result_hash.clone(),
                scripts: u.scripts(),
                jobs: evalctl::jobid::jobs(ids),
                attempts: 1,
                observed: Observed::Pending,
                serial: 1,
                ..Default::default()
            },
        );
    }
    state
}

fn seen(entries: &[(&str, Observed, &[u64], Option<&str>)]) -> BTreeMap<String, Observation> {
    entries
        .iter()
        .map(|(unit, observed, live, status)| {
            let o = Observation {
                observed: *observed,
                live_jobs: evalctl::jobid::jobs(live.iter().copied()),
                status: status.map(str::to_owned),
                ..Default::default()
            };
            (unit.to_string(), o)
        })
        .collect()
}

#[test]
fn tasks_are_units_and_packs_are_jobs() {
    let r = rendered(2);
    let ids: Vec<&str> = r.jobs.iter().map(|j| j.id.as_str()).collect();
    for pack in ["pack.t0", "pack.t2", "pack.t4"] {
        assert!(ids.contains(&pack) && ids.contains(&format!("{pack}.resume").as_str()), "{ids:?}");
    }
    assert_eq!(r.jobs.len(), 6, "{ids:?}");
    let units = plan::units(&r);
    let names: Vec<(&str, Option<&str>)> = units.iter().map(|u| (u.id.as_str(), u.pack.as_deref())).collect();
    assert_eq!(
        names,
        [
            ("t0", Some("pack.t0")),
            ("t1", Some("pack.t0")),
            ("t2", Some("pack.t2")),
            ("t3", Some("pack.t2")),
            ("t4", Some("pack.t4"))
        ]
    );
    for u in &units {
        assert_eq!(u.jobs.len(), 2, "{}: the pack's first and resume links", u.id);
        assert!(u.jobs.iter().all(|j| j.serves(&u.id)), "{}", u.id);
        assert_eq!(u.dir, format!("/shared/out/pk/{}", u.id), "each task keeps its folder");
    }
    assert_eq!(units[0].script_hash, units[1].script_hash, "a pack's tasks share its scripts");
    assert_ne!(units[0].result_hash, units[1].result_hash, "each task has its own result");
    assert!(units[0].carries_scripts && !units[1].carries_scripts, "the scripts are shown once per pack");
    // A task's result does not depend on the packing: the same as per_task.
    let per_task = render_text(&config("/shared/out", 2).replace(", topology: packed, tasks_per_job: 2", ""));
    let hashes: BTreeMap<String, String> =
        plan::units(&per_task).into_iter().map(|u| (u.id.clone(), u.result_hash.clone())).collect();
    for u in &units {
        assert_eq!(hashes[&u.id], u.result_hash, "{}: packing does not rerun completed tasks", u.id);
    }
    // The script: one model server, then each task in its own folder.
    let script = r.jobs.iter().find(|j| j.id == "pack.t0").unwrap().script.text();
    assert_eq!(script.matches("\nevalctl_start_servers model ").count(), 1, "{script}");
    for t in ["t0", "t1"] {
        assert!(script.contains(&format!("if evalctl_pack_task {t} /shared/out/pk/{t}; then\n")), "{script}");
        assert!(script.contains(&format!("--container-mounts=/shared/out/pk/{t}/artifacts:/results")), "{t}");
    }
    assert!(!script.contains("evalctl_pack_task t2"), "{script}");
    let check = Command::new("bash").arg("-n").arg("-c").arg(&script).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    // The graph shows the packing.
    let text = config("/shared/out", 2);
    let sources = Sources::new();
    let loaded = config::load_text(Path::new("pk.yaml"), &text, &[], &sources, &|_| None).unwrap();
    let (graph, _) = evalctl::graph::build(&loaded).unwrap();
    let json = graph.to_json().unwrap();
    let pack = json["nodes"].as_array().unwrap().iter().find(|n| n["id"] == "pack.t2").unwrap().clone();
    assert_eq!(pack["kind"], "pack");
    assert_eq!(pack["units"], serde_json::json!(["t2", "t3"]), "{pack}");
    let dot = graph.to_dot().unwrap();
    assert!(dot.contains("\"pack.t2\" [shape=box3d, label=\"pack.t2\\nt2, t3\"];"), "{dot}");
}

#[test]
fn a_plan_counts_packs_and_model_loads() {
    let r = rendered(2);
    let p = plan_with(&r, BTreeMap::new(), State::new(&r.stack));
    assert!(p.plan.changes.iter().all(|c| c.action == Action::Create), "{:?}", p.plan.changes);
    let packing = p.plan.packing.clone().unwrap();
    assert_eq!((packing.tasks, packing.packs, packing.tasks_submitted, packing.packs_submitted), (5, 3, 5, 3));
    assert_eq!(packing.model_loads_saved, 2);
    assert_eq!(p.plan.cost.units.len(), 3, "a pack is priced once: {:?}", p.plan.cost.units);
    let text = plan::output::text(&p.plan, false);
    assert!(text.contains("  + t1 in pack.t0 (create: not on the cluster)"), "{text}");
    assert!(text.contains("+++ b/pack.t0/task.sbatch"), "{text}");
    assert!(!text.contains("b/t1/task.sbatch"), "a pack's scripts are shown once: {text}");
    assert!(
        text.contains(
            "Packed 2 tasks per job: 5 tasks in 3 jobs. Submits 3 packs (6 jobs) for 5 tasks: 2 model loads saved."
        ),
        "{text}"
    );
}

#[test]
fn the_tasks_of_a_pack_move_together() {
    let r = rendered(2);
    // A pending pack whose script changed: both tasks are replaced, the
    // pack's jobs cancelled once, and the other packs are untouched.
    let mut state = applied(&r, &[("pack.t0", vec![11, 10]), ("pack.t2", vec![21, 20]), ("pack.t4", vec![31, 30])]);
    state.units.get_mut("t0").unwrap().script_hash = "old".into();
    state.units.get_mut("t1").unwrap().script_hash = "old".into();
    let obs = seen(&[
        ("pack.t0", Observed::Pending, &[11, 10], None),
        ("pack.t2", Observed::Running, &[21, 20], Some("running 20")),
        ("t2", Observed::Completed, &[], Some("completed 20")),
        ("t3", Observed::Failed, &[], Some("running 20")),
        ("pack.t4", Observed::Pending, &[31, 30], None),
    ]);
    let p = plan_with(&r, obs, state.clone());
    assert_eq!(action(&p, "t0").0, Action::Replace);
    assert_eq!(action(&p, "t1").0, Action::Replace);
    assert_eq!(action(&p, "t2"), (Action::None, "completed".into()), "a task that ended stays as it is");
    assert_eq!(action(&p, "t3").0, Action::None, "running in its pack: {:?}", action(&p, "t3"));
    assert_eq!(action(&p, "t4").0, Action::None);
    assert!(p.plan.changes.iter().all(|c| c.unit != "pack.t0" && c.unit != "pack.t2"), "packs are no units");

    // A task to run again while its pack still runs the others waits.
    let mut state2 = state.clone();
    for unit in ["t2", "t3"] {
        state2.units.get_mut(unit).unwrap().script_hash = "old".into();
    }
    state2.units.get_mut("t2").unwrap().result_hash = "older result".into();
    let obs = seen(&[
        ("pack.t2", Observed::Running, &[21, 20], Some("running 20")),
        ("t2", Observed::Completed, &[], Some("completed 20")),
        ("t3", Observed::Failed, &[], Some("running 20")),
    ]);
    let p = plan_with(&r, obs, state2);
    let (a, why) = action(&p, "t2");
    assert_eq!(a, Action::None, "{why}");
    assert!(why.contains("waits until pack.t2 ends"), "{why}");
    assert_eq!(action(&p, "t3").0, Action::Update, "the running pack's next link takes the new script");

    // Once the pack ended, the failed task is retried alone: its pack is
    // submitted, and the completed task (skipped by the script) stays.
    let obs = seen(&[
        ("t0", Observed::Completed, &[], Some("completed 10")),
        ("t1", Observed::Completed, &[], Some("completed 10")),
        ("pack.t2", Observed::Failed, &[], Some("failed 20 tasks-failed")),
        ("t2", Observed::Completed, &[], Some("completed 20")),
        ("t3", Observed::Failed, &[], Some("failed 20 exit 1")),
        ("t4", Observed::Completed, &[], Some("completed 30")),
    ]);
    let p = plan_with(&r, obs, state.clone());
    assert_eq!(action(&p, "t2").0, Action::None);
    assert_eq!(action(&p, "t3").0, Action::Retry);
    assert_eq!(p.plan.packing.as_ref().map(|k| (k.packs_submitted, k.tasks_submitted)), Some((1, 1)));

    // The packing changed to 3 per job: pack.t0 (t0, t1, t2), pack.t3
    // (t3, t4). The old pack.t2 still runs t2 and t3: both are replaced
    // in their new packs, and the old pack, no longer in the config, is
    // cancelled.
    let r3 = rendered(3);
    let mut state3 = applied(&r, &[("pack.t0", vec![11, 10]), ("pack.t2", vec![51, 50]), ("pack.t4", vec![31, 30])]);
    state3.units.values_mut().for_each(|u| u.script_hash = "old".into());
    let obs = seen(&[
        ("t0", Observed::Completed, &[], Some("completed 10")),
        ("t1", Observed::Completed, &[], Some("completed 10")),
        ("pack.t2", Observed::Running, &[51, 50], Some("running 50")),
        ("t2", Observed::Failed, &[], Some("running 50")),
        ("t4", Observed::Completed, &[], Some("completed 30")),
    ]);
    let p = plan_with(&r3, obs, state3);
    for (unit, pack) in [("t2", "pack.t0"), ("t3", "pack.t3")] {
        let c = p.plan.changes.iter().find(|c| c.unit == unit).unwrap();
        assert_eq!(
            (c.action, c.cancel_jobs.clone()),
            (Action::Replace, evalctl::jobid::jobs([51, 50])),
            "{unit}: {}",
            c.reason
        );
        assert!(c.reason.contains(&format!("runs in another pack now ({pack})")), "{}", c.reason);
        assert!(c.interrupts_running, "{unit}");
    }
    let old = p.plan.changes.iter().find(|c| c.unit == "pack.t2").expect("the old pack is cancelled");
    assert_eq!((old.action, old.reason.as_str()), (Action::Cancel, "removed from the config"));
    for unit in ["t0", "t1", "t4"] {
        assert_eq!(action(&p, unit).0, Action::None, "{unit}");
    }
}

/// A fresh folder `evalctl-<name>-<pid>` with `fake/` for the stand-ins
/// and `config(output_dir)` rendered under `out/`, its stack lock held:
/// (folder, fake, rendered).
fn locked(name: &str, config: impl Fn(&str) -> String) -> (PathBuf, PathBuf, Rendered) {
    let tmp: PathBuf = std::env::temp_dir().join(format!("evalctl-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let fake = tmp.join("fake");
    std::fs::create_dir_all(&fake).unwrap();
    let r = render_text(&config(tmp.join("out").to_str().unwrap()));
    let stack = Path::new(&r.stack_dir);
    std::fs::create_dir_all(stack.join(".evalctl")).unwrap();
    std::fs::write(stack.join(".evalctl/lock"), serde_json::to_string(&lock()).unwrap()).unwrap();
    (tmp, fake, r)
}

fn lock() -> evalctl::remote::lock::LockInfo {
    evalctl::remote::lock::LockInfo {
        id: "0000abcd00001234".into(),
        who: "alice".into(),
        host: "laptop".into(),
        pid: 42,
        when: 1_700_000_000,
        command: "evalctl apply".into(),
    }
}

/// Runs the apply program of `planned` against the stand-ins; checks that
/// it succeeded and wrote the state it records. Returns what it did and
/// the `sbatch` calls.
fn run_apply(planned: &Planned<'_>, r: &Rendered, fake: &Path) -> (submit::Outcome, State, String) {
    run_apply_with(planned, r, fake, FAKE_SLURM)
}

/// [`run_apply`] with other stand-ins.
fn run_apply_with(
    planned: &Planned<'_>,
    r: &Rendered,
    fake: &Path,
    fakes: &[(&str, &str)],
) -> (submit::Outcome, State, String) {
    let secrets = SecretValues::new();
    let lock = lock();
    let inputs = Inputs {
        plan: &planned.plan,
        rendered: r,
        units: &planned.units,
        observations: &planned.observations,
        state: &planned.state,
        secrets: &secrets,
        lock_id: &lock.id,
        now: 1_700_000_100,
        max_array_size: None,
    };
    let prog = submit::program(&inputs);
    let out = run_with_fakes(&prog.program.full_text(), fake, fakes);
    let outcome = submit::outcome(&Replies::from_stdout(String::from_utf8(out.stdout).unwrap()));
    assert_eq!(outcome.error, None, "{}", String::from_utf8_lossy(&out.stderr));
    let written =
        State::parse(&std::fs::read_to_string(Path::new(&r.stack_dir).join(".evalctl/state.json")).unwrap()).unwrap();
    assert_eq!(written, submit::recorded_state(&inputs, &prog.submitting, &outcome));
    let calls = std::fs::read_to_string(fake.join("sbatch.calls")).unwrap_or_default();
    (outcome, written, calls)
}

/// Apply submits each pack once (its first and resume links), records its
/// jobs for each of its tasks, creates each task's folder and clears the
/// status of the tasks it runs again, not of those that ended.
#[test]
fn apply_submits_each_pack_once_and_records_it_for_every_task() {
    let (tmp, fake, r) = locked("packed", |out| config(out, 2));
    let stack = Path::new(&r.stack_dir);
    // t2 completed and t3 failed in an earlier run of pack.t2.
    for (unit, status) in [("t2", "completed 20"), ("t3", "failed 20 exit 1"), ("pack.t2", "failed 20 tasks-failed")] {
        std::fs::create_dir_all(stack.join(unit)).unwrap();
        std::fs::write(stack.join(unit).join("status"), format!("{status}\n")).unwrap();
    }
    // t1 used up its attempts (its pack never reached it); t0 is new.
    let mut state = applied(&r, &[("pack.t2", vec![21, 20]), ("pack.t0", vec![11, 10])]);
    for u in ["t0", "t4"] {
        state.units.remove(u);
    }
    state.units.get_mut("t1").unwrap().attempts = 3;
    let obs = seen(&[
        ("t1", Observed::Failed, &[], None),
        ("pack.t2", Observed::Failed, &[], Some("failed 20 tasks-failed")),
        ("t2", Observed::Completed, &[], Some("completed 20")),
        ("t3", Observed::Failed, &[], Some("failed 20 exit 1")),
    ]);
    let planned = plan_with(&r, obs, state);
    let actions: Vec<(&str, Action)> = planned.plan.changes.iter().map(|c| (c.unit.as_str(), c.action)).collect();
    assert_eq!(
        actions,
        [
            ("t0", Action::Create),
            ("t1", Action::None),
            ("t2", Action::None),
            ("t3", Action::Retry),
            ("t4", Action::Create)
        ]
    );
    let (_, written, calls) = run_apply(&planned, &r, &fake);
    let sbatch: Vec<&str> = calls.lines().filter(|l| l.starts_with("sbatch")).collect();
    assert_eq!(sbatch.len(), 6, "each pack's two links once:\n{calls}");
    for pack in ["pack.t0", "pack.t2", "pack.t4"] {
        assert_eq!(sbatch.iter().filter(|l| l.contains(&format!("/{pack}/first@"))).count(), 1, "{calls}");
    }
    let jobs = |u: &str| written.units[u].jobs.clone();
    assert_eq!(jobs("t0").len(), 2);
    assert_eq!(jobs("t1"), vec![11, 10], "a task not run again keeps its record");
    assert_eq!(
        std::fs::read_to_string(stack.join("t1/status")).unwrap(),
        "failed 0 not-run-again\n",
        "its pack skips a task the plan does not run again"
    );
    assert_eq!(jobs("t3").len(), 2);
    assert_eq!(jobs("t2"), vec![21, 20], "a task that is not run again keeps its record");
    for t in ["t0", "t3", "t4"] {
        assert!(stack.join(t).join("artifacts").is_dir() && stack.join(t).join("logs").is_dir(), "{t}'s folder");
    }
    assert!(!stack.join("t3/status").exists(), "the retried task's status is cleared");
    assert!(!stack.join("pack.t2/status").exists(), "the pack's status is cleared");
    assert_eq!(std::fs::read_to_string(stack.join("t2/status")).unwrap(), "completed 20\n", "kept: the pack skips it");
    assert!(stack.join("pack.t0/task.sbatch").is_file() && stack.join("pack.t0/resume.sbatch").is_file());
    assert!(!stack.join("t1/task.sbatch").exists(), "the scripts are the pack's");
    let _ = std::fs::remove_dir_all(&tmp);
}

/// `max_concurrent: 2` (per task here): the first links go round two
/// lanes; each waits (`afterany`) for the first and resume links of the
/// one two places before it, whose folder names it (`lane-next`) for the
/// runtime. A chain that already runs is a lane's first occupant.
#[test]
fn max_concurrent_chains_first_links_in_lanes() {
    let lanes = |out: &str| {
        config(out, 2)
            .replace("topology: packed, tasks_per_job: 2", "max_concurrent: 2, sbatch_extra_flags: {exclusive: false}")
    };
    let (tmp, fake, r) = locked("lanes", lanes);
    let stack = Path::new(&r.stack_dir);
    // t0 runs (jobs 9 and 8, from an earlier apply); the other four are new.
    let mut state = State::new(&r.stack);
    state
        .units
        .insert("t0".into(), UnitState { jobs: evalctl::jobid::jobs([9, 8]), attempts: 1, ..Default::default() });
    std::fs::create_dir_all(stack.join("t0")).unwrap();
    let obs = seen(&[("t0", Observed::Running, &[9, 8], Some("running 8"))]);
    let mut planned = plan_with(&r, obs, state);
    // The state's hashes are not the config's: keep t0 as it runs.
    let t0 = planned.plan.changes.iter_mut().find(|c| c.unit == "t0").unwrap();
    t0.action = Action::None;
    assert_eq!(planned.plan.max_concurrent, Some(2));
    assert!(plan::output::text(&planned.plan, false).contains("At most 2 task chains run at once (max_concurrent)."));
    let (outcome, _, calls) = run_apply(&planned, &r, &fake);
    let id = |unit: &str, role: &str| {
        outcome.submitted.iter().find(|(u, r, _)| u == unit && r == role).map(|(_, _, id)| *id).unwrap()
    };
    let sbatch_of = |unit: &str| {
        calls.lines().find(|l| l.starts_with("sbatch") && l.contains(&format!("/{unit}/first@"))).unwrap().to_owned()
    };
    // Lane 0: t0 (running), then t1, then t3; lane 1: t2, then t4.
    assert!(sbatch_of("t1").contains("--dependency=afterany:9:8 "), "{calls}");
    assert!(!sbatch_of("t2").contains("--dependency"), "{calls}");
    let after = |unit: &str| format!("--dependency=afterany:{}:{} ", id(unit, "first"), id(unit, "resume"));
    assert!(sbatch_of("t3").contains(&after("t1")), "{calls}");
    assert!(sbatch_of("t4").contains(&after("t2")), "{calls}");
    let lane_next = |unit: &str| std::fs::read_to_string(stack.join(unit).join("lane-next")).unwrap_or_default();
    assert_eq!(lane_next("t0"), format!("{} \n", id("t1", "first")), "the running chain names its successor");
    assert_eq!(lane_next("t1"), format!("{} \n", id("t3", "first")));
    assert_eq!(lane_next("t2"), format!("{} \n", id("t4", "first")));
    assert_eq!(lane_next("t3"), "", "the last of a lane has no successor");
    let _ = std::fs::remove_dir_all(&tmp);
}

/// `job_arrays`: the first links go in arrays of at most
/// `MAX_ARRAY_ELEMENTS` (Slurm's default `MaxArraySize`), one `sbatch`
/// each, throttled by `max_concurrent`; no resume link is submitted (each
/// element queues its own); every task records its element
/// (`<array>_<index>`) and the array's map names each element's tag.
#[test]
fn job_arrays_one_sbatch_per_thousand_first_links() {
    assert_eq!(submit::array_cap(Some(1001)), 1000, "Slurm's default MaxArraySize");
    assert_eq!(submit::array_cap(Some(100_001)), 100_000);
    assert_eq!(submit::array_cap(Some(0)), 1);
    let n = submit::MAX_ARRAY_ELEMENTS + 3;
    let arrays = |out: &str| {
        format!(
            "defaults: [{{execution: slurm/default}}, {{deployment: vllm}}, _self_]\n\
             name: ar\n\
             execution: {{hostname: login, account: a, output_dir: {out}, job_arrays: true, max_concurrent: 4}}\n\
             deployment: {{hf_model_handle: org/model, served_model_name: model}}\n\
             evaluation:\n  tasks:\n{}",
            (0..n).map(|i| format!("    - {{name: gsm8k, id: t{i}}}\n")).collect::<String>()
        )
    };
    let (tmp, fake, r) = locked("arrays", arrays);
    let planned = plan_with(&r, BTreeMap::new(), State::new(&r.stack));
    assert!(planned.plan.changes.iter().all(|c| c.action == Action::Create));
    let (outcome, written, calls) = run_apply(&planned, &r, &fake);
    let sbatch: Vec<&str> = calls.lines().filter(|l| l.starts_with("sbatch")).collect();
    // The two arrays are submitted at once, in either order.
    assert_eq!(sbatch.len(), 2, "{calls}");
    assert_eq!(
        sbatch.iter().filter(|l| l.contains("--array=0-999%4 --job-name=evalctl:ar/array")).count(),
        1,
        "{calls}"
    );
    assert_eq!(sbatch.iter().filter(|l| l.contains("--array=0-2%4 --job-name=evalctl:ar/array")).count(), 1, "{calls}");
    assert!(!calls.contains("resume"), "no resume link is submitted by apply");
    assert_eq!(outcome.submitted.len(), n, "one job per task");
    let el = |a: u64, i: u32| vec![evalctl::jobid::JobId::element(a, i)];
    let (big, small) = (written.units["t0"].jobs[0].id, written.units["t1000"].jobs[0].id);
    assert_ne!(big, small);
    assert_eq!(written.units["t0"].jobs, el(big, 0));
    assert_eq!(written.units["t999"].jobs, el(big, 999));
    assert_eq!(written.units["t1000"].jobs, el(small, 0));
    assert_eq!(written.units["t1002"].jobs, el(small, 2));
    let map = std::fs::read_to_string(Path::new(&r.stack_dir).join(format!(".evalctl/arrays/{small}.map"))).unwrap();
    let lines: Vec<&str> = map.lines().collect();
    assert_eq!(lines.len(), 3, "{map}");
    assert!(lines[2].starts_with(&format!("{small}_2|evalctl:ar/t1002/first@")), "{map}");
    let tag = evalctl::remote::layout::parse_name(lines[2].split_once('|').unwrap().1).unwrap();
    assert_eq!((tag.unit.as_str(), tag.role.as_str()), ("t1002", "first"));
    let _ = std::fs::remove_dir_all(tmp);
}

/// Packs go in job arrays like tasks: one `sbatch` for every pack's first
/// link, no resume links, and every task of a pack records its pack's
/// element.
#[test]
fn packs_go_in_job_arrays_too() {
    let arrays = |out: &str| config(out, 2).replace("tasks_per_job: 2}", "tasks_per_job: 2, job_arrays: true}");
    let (tmp, fake, r) = locked("pack-arrays", arrays);
    assert!(r.job_arrays);
    let planned = plan_with(&r, BTreeMap::new(), State::new(&r.stack));
    // sbatch keeps a copy of the script it was given.
    let keep = format!("{}; cp \"${{@: -1}}\" \"$EVALCTL_FAKE/array.sbatch\"", FAKE_SLURM[0].1);
    let mut fakes = FAKE_SLURM.to_vec();
    fakes[0] = ("sbatch", &keep);
    let (_, written, calls) = run_apply_with(&planned, &r, &fake, &fakes);
    let sbatch: Vec<&str> = calls.lines().filter(|l| l.starts_with("sbatch")).collect();
    assert_eq!(sbatch.len(), 1, "{calls}");
    assert!(sbatch[0].contains("--array=0-2 --job-name=evalctl:pk/array"), "{calls}");
    let map = std::fs::read_dir(Path::new(&r.stack_dir).join(".evalctl/arrays"))
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with(".map"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .expect("the array's map");
    let tags: Vec<String> =
        map.lines().map(|l| evalctl::remote::layout::parse_name(l.split_once('|').unwrap().1).unwrap().unit).collect();
    assert_eq!(tags, ["pack.t0", "pack.t2", "pack.t4"], "{map}");
    let element = |u: &str| written.units[u].jobs.clone();
    for (i, tasks) in [["t0", "t1"], ["t2", "t3"], ["t4", "t4"]].iter().enumerate() {
        for t in tasks {
            let jobs = element(t);
            assert_eq!(jobs.len(), 1, "{t}: {jobs:?}");
            assert_eq!(jobs[0].index, Some(i as u32), "{t} records its pack's element");
        }
    }
    // The array's script: shellcheck-clean; element 1 runs pack.t2's first
    // link in its folder, its output in the folder's batch log.
    let script = fake.join("array.sbatch");
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(text.starts_with("#!/bin/bash\n#SBATCH --account=a\n"), "{text}");
    assert!(!text.contains("--job-name") && !text.contains("--output"), "given on the command line: {text}");
    let sc = Command::new("shellcheck").arg(&script).output().expect("shellcheck is needed to run this test");
    assert!(sc.status.success(), "{}", String::from_utf8_lossy(&sc.stdout));
    let dir = Path::new(&r.stack_dir).join("pack.t2");
    std::fs::write(dir.join("task.sbatch"), "echo \"pack.t2 ran in $PWD\"\n").unwrap();
    let ran = Command::new("bash")
        .arg(&script)
        .env("SLURM_ARRAY_JOB_ID", "77")
        .env("SLURM_ARRAY_TASK_ID", "1")
        .output()
        .unwrap();
    assert!(ran.status.success(), "{}", String::from_utf8_lossy(&ran.stderr));
    let log = std::fs::read_to_string(dir.join("logs/slurm-77_1.out")).unwrap();
    assert_eq!(log, format!("pack.t2 ran in {}\n", dir.display()));
    let none = Command::new("bash").arg(&script).env("SLURM_ARRAY_TASK_ID", "3").output().unwrap();
    assert!(!none.status.success() && String::from_utf8_lossy(&none.stderr).contains("no job for array element 3"));
    let _ = std::fs::remove_dir_all(tmp);
}
