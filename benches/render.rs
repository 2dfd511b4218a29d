//! Compile (load, compose, interpolate, validate, build the graph) and
//! render a config of 1, 100, 1,000 and 10,000 tasks.

use std::hint::black_box;
use std::path::Path;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use evalctl::config;
use evalctl::diag::Sources;

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

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("compile+render");
    group.sample_size(10);
    for n in [1usize, 100, 1_000, 10_000] {
        let text = config_text(n);
        group.bench_with_input(BenchmarkId::from_parameter(n), &text, |b, t| {
            b.iter(|| black_box(compile_and_render(t)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
