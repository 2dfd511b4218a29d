//! Scale: a config of 1, 100, 1,000 and 10,000 tasks, in process.
//! - `render`: compile (load, compose, interpolate, validate, build the
//!   graph) and render every script;
//! - `plan`: reconcile the rendered jobs with an empty state (every job
//!   new, the largest plan) and write the text plan, grouped hunks included;
//! - `markdown`: the same plan as a pull-request comment (within 65,536
//!   characters);
//! - `json`: the same plan as its JSON document.
//!
//! Whole-process time and peak memory of the same sizes: `benches/scale.sh`.

use std::hint::black_box;
use std::path::Path;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use evalctl::config;
use evalctl::diag::Sources;
use evalctl::plan::{self, output};

/// A config of `n` tasks cycling through real catalog names, with explicit ids.
pub fn config_text(n: usize) -> String {
    let names =
        ["hellaswag", "arc_challenge", "winogrande", "gsm8k", "lm-evaluation-harness.ifeval", "simple_evals.mmlu"];
    let mut s = String::from(
        "defaults:\n  - execution: slurm/default\n  - deployment: vllm\n  - _self_\n\
         execution:\n  hostname: login\n  account: acct\n  output_dir: /shared/evals\n  walltime: \"02:00:00\"\n\
         deployment:\n  hf_model_handle: org/model\n  served_model_name: model\n  tensor_parallel_size: 1\n\
         evaluation:\n  nemo_evaluator_config:\n    config:\n      params:\n        parallelism: 32\n  tasks:\n",
    );
    for i in 0..n {
        s.push_str(&format!(
            "    - name: {}\n      id: t{i}\n      nemo_evaluator_config: {{config: {{params: {{limit_samples: {i}}}}}}}\n",
            names[i % names.len()]
        ));
    }
    s
}

fn compile_and_render(text: &str) -> usize {
    let sources = Sources::new();
    let loaded = config::load_text(Path::new("bench.yaml"), text, &[], &sources, &|_| None).expect("valid");
    let (graph, _) = evalctl::graph::build(&loaded).expect("graph");
    let rendered = evalctl::render::render(&loaded, &graph).expect("render");
    rendered.jobs.iter().map(|j| j.script.len()).sum()
}

fn rendered(text: &str) -> evalctl::render::Rendered {
    let sources = Sources::new();
    let loaded = config::load_text(Path::new("bench.yaml"), text, &[], &sources, &|_| None).expect("valid");
    let (graph, _) = evalctl::graph::build(&loaded).expect("graph");
    evalctl::render::render(&loaded, &graph).expect("render")
}

/// The plan of `rendered` against an empty state: every job is new.
fn plan(rendered: &evalctl::render::Rendered) -> evalctl::plan::Plan {
    let seen = plan::Seen {
        observations: Default::default(),
        state: evalctl::state::State::new(&rendered.stack),
        target: "offline".into(),
        offline: true,
        notes: vec![],
    };
    plan::make(rendered, 3, &[], &plan::Targets::default(), seen).plan
}

const SIZES: [usize; 4] = [1, 100, 1_000, 10_000];

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("render");
    group.sample_size(10);
    for n in SIZES {
        let text = config_text(n);
        group.bench_with_input(BenchmarkId::from_parameter(n), &text, |b, t| {
            b.iter(|| black_box(compile_and_render(t)))
        });
    }
    group.finish();
    let rendered: Vec<_> = SIZES.iter().map(|n| rendered(&config_text(*n))).collect();
    let mut group = c.benchmark_group("plan");
    group.sample_size(10);
    for (n, r) in SIZES.iter().zip(&rendered) {
        group.bench_with_input(BenchmarkId::from_parameter(n), r, |b, r| {
            b.iter(|| {
                let p = plan(r);
                output::write_text(&p, false, &mut std::io::sink()).expect("sink");
                black_box(p.changes.len())
            })
        });
    }
    group.finish();
    let plans: Vec<_> = rendered.iter().map(plan).collect();
    let mut group = c.benchmark_group("markdown");
    group.sample_size(10);
    for (n, p) in SIZES.iter().zip(&plans) {
        group.bench_with_input(BenchmarkId::from_parameter(n), p, |b, p| {
            b.iter(|| black_box(output::markdown(p, output::COMMENT_LIMIT).len()))
        });
    }
    group.finish();
    let mut group = c.benchmark_group("json");
    group.sample_size(10);
    for (n, p) in SIZES.iter().zip(&plans) {
        group.bench_with_input(BenchmarkId::from_parameter(n), p, |b, p| {
            b.iter(|| output::write_json(p, &mut std::io::sink()).expect("sink"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
