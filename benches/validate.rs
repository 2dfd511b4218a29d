//! `validate` of the seed example, in process: read, compose, override,
//! interpolate, schema-check and semantic-check. The whole-process figure
//! (including start-up) comes from `scripts/bench.sh`.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use evalctl::config;
use evalctl::diag::Sources;

fn validate(c: &mut Criterion) {
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/slurm_llama_3_1_8b_instruct.yaml"));
    let overrides = vec!["evaluation.tasks.hellaswag.nemo_evaluator_config.config.params.limit_samples=10".to_owned()];
    c.bench_function("validate seed example", |b| {
        b.iter(|| {
            let sources = Sources::new();
            black_box(config::load(path, &overrides, &sources).is_ok())
        })
    });
}

criterion_group!(benches, validate);
criterion_main!(benches);
