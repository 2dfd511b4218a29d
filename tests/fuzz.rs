//! Property tests over the whole offline pipeline (load, compose,
//! interpolate, validate, graph, render) and `migrate`: no input, however
//! malformed, panics or takes long; a failure always carries at least one
//! error. Cases start from every example and fixture config.

use std::path::Path;
use std::time::{Duration, Instant};

use evalctl::config;
use evalctl::diag::Sources;
use proptest::prelude::*;

const SEED: &str = include_str!("../examples/slurm_llama_3_1_8b_instruct.yaml");
/// Configs to mutate, by their path (group files beside them are found).
const SEEDS: &[(&str, &str)] = &[
    ("examples/slurm_llama_3_1_8b_instruct.yaml", SEED),
    (
        "examples/slurm_llama_3_1_8b_instruct_checkpoint.yaml",
        include_str!("../examples/slurm_llama_3_1_8b_instruct_checkpoint.yaml"),
    ),
    ("tests/fixtures/launcher_features.yaml", include_str!("fixtures/launcher_features.yaml")),
    ("tests/fixtures/new_dialect_judge.yaml", include_str!("fixtures/new_dialect_judge.yaml")),
    ("tests/fixtures/nim.yaml", include_str!("fixtures/nim.yaml")),
    ("tests/fixtures/old_dialect.yaml", include_str!("fixtures/old_dialect.yaml")),
    ("tests/fixtures/user_groups.yaml", include_str!("fixtures/user_groups.yaml")),
];
/// The longest one case may take (debug build, a loaded machine).
const CASE_LIMIT: Duration = Duration::from_secs(3);
/// A config in the older env-var dialect, for `migrate`.
const OLD: &str = include_str!("fixtures/old_dialect.yaml");

fn no_env(_: &str) -> Option<String> {
    None
}

fn check(text: &str, overrides: &[String]) {
    check_at("fuzz.yaml", text, overrides);
}

/// Runs the pipeline on `text` as if it were the file `path`.
fn check_at(path: &str, text: &str, overrides: &[String]) {
    let started = Instant::now();
    let sources = Sources::new();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    let errors = match config::load_text(&path, text, overrides, &sources, &no_env) {
        Ok(loaded) => match evalctl::graph::build(&loaded) {
            Ok((graph, _)) => evalctl::render::render(&loaded, &graph).err().unwrap_or_default(),
            Err(d) => d,
        },
        Err(f) => {
            assert!(!f.diagnostics.is_empty(), "failure without an error");
            f.diagnostics
        }
    };
    if !errors.is_empty() {
        assert!(errors.iter().any(|d| d.is_error()), "failure without an error");
        for d in &errors {
            let _ = d.render(&sources);
        }
    }
    assert!(started.elapsed() < CASE_LIMIT, "took {:?}:\n{text}", started.elapsed());
}

/// `migrate` never panics; what it returns parses again, and a refusal is
/// a located error.
fn check_migrate(text: &str) {
    let sources = Sources::new();
    match config::migrate::migrate("fuzz.yaml", text, &sources) {
        Ok(m) => {
            if let Err(e) = config::yaml::parse(&m.text, Default::default()) {
                panic!("migrate returned text that does not parse: {}\n{text:?}\n=>\n{:?}", e.message, m.text);
            }
        }
        Err(d) => {
            assert!(d.is_error() && d.span.is_some(), "{d:?}");
            let _ = d.render(&sources);
        }
    }
}

/// Fragments of the older dialect and of what `migrate` must not damage.
fn migrate_fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => fragment(),
        1 => Just("\r".to_owned()),
        1 => Just("\r\n".to_owned()),
        1 => Just("|\n".to_owned()),
        1 => Just(">-\n".to_owned()),
        1 => Just("<<: *a\n".to_owned()),
        1 => Just("env_vars:".to_owned()),
        1 => Just("env_vars: {}".to_owned()),
        1 => Just("\n  env_vars:\n    deployment:\n      ".to_owned()),
        1 => Just("\n    evaluation:\n      ".to_owned()),
        1 => Just("HF_TOKEN".to_owned()),
        1 => Just("${oc.env:TOKEN}".to_owned()),
        1 => Just("# c".to_owned()),
    ]
}

/// Fragments that exercise YAML structure, interpolation and our keys.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("\n".to_owned()),
        Just("  ".to_owned()),
        Just(": ".to_owned()),
        Just("- ".to_owned()),
        Just("${".to_owned()),
        Just("}".to_owned()),
        Just("${oc.env:".to_owned()),
        Just("${select_not_null:".to_owned()),
        Just("???".to_owned()),
        Just("'".to_owned()),
        Just("\"".to_owned()),
        Just("[".to_owned()),
        Just("{".to_owned()),
        Just("&a ".to_owned()),
        Just("*a".to_owned()),
        Just("!!int ".to_owned()),
        Just("\t".to_owned()),
        Just("---\n".to_owned()),
        Just("defaults".to_owned()),
        Just("execution".to_owned()),
        Just("deployment".to_owned()),
        Just("evaluation".to_owned()),
        Just("tasks".to_owned()),
        Just("name".to_owned()),
        Just("walltime".to_owned()),
        Just("_self_".to_owned()),
        Just("\n  topology: packed\n  tasks_per_job: 2\n  max_concurrent: 3\n".to_owned()),
        Just("topology: packed".to_owned()),
        "[a-z_.]{1,12}",
        "[0-9:]{1,9}",
        any::<String>(),
    ]
}

/// Cases the fuzzer found, kept as plain tests.
#[test]
fn found_cases_do_not_panic() {
    // A list where the harness's `config` section must be a mapping.
    let (path, text) = SEEDS[6];
    let mut s = text.to_owned();
    s.insert_str(489, "- ");
    assert!(s.contains("-   params:"), "the case no longer cuts where it did:\n{s}");
    check_at(path, &s, &[]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
        check(&text, &[]);
    }

    #[test]
    fn structured_fragments_never_panic(parts in prop::collection::vec(fragment(), 0..40)) {
        check(&parts.concat(), &[]);
    }

    #[test]
    fn mutated_seed_never_panics(cut in 0usize..SEED.len(), insert in fragment(), del in 0usize..20) {
        let mut s: String = SEED.to_owned();
        let at = (0..=cut).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0);
        let end = (at + del).min(s.len());
        let end = (end..=s.len()).find(|i| s.is_char_boundary(*i)).unwrap_or(s.len());
        s.replace_range(at..end, &insert);
        check(&s, &[]);
    }

    #[test]
    fn every_seed_mutated_never_panics(
        seed in 0usize..SEEDS.len(),
        cut in 0usize..4096,
        insert in fragment(),
        del in 0usize..20,
    ) {
        let (path, text) = SEEDS[seed];
        let mut s: String = text.to_owned();
        let at = (0..=cut.min(s.len())).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0);
        let end = (at + del).min(s.len());
        let end = (end..=s.len()).find(|i| s.is_char_boundary(*i)).unwrap_or(s.len());
        s.replace_range(at..end, &insert);
        check_at(path, &s, &[]);
    }

    #[test]
    fn migrate_never_panics_on_arbitrary_text(text in "\\PC{0,300}") {
        check_migrate(&text);
    }

    #[test]
    fn migrate_never_panics_on_fragments(parts in prop::collection::vec(migrate_fragment(), 0..40)) {
        check_migrate(&parts.concat());
    }

    #[test]
    fn migrate_never_panics_on_a_mutated_old_config(
        cut in 0usize..OLD.len(),
        insert in migrate_fragment(),
        del in 0usize..20,
        nl in prop_oneof![Just("\n"), Just("\r\n"), Just("\r")],
    ) {
        let mut s: String = OLD.to_owned();
        let at = (0..=cut).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0);
        let end = (at + del).min(s.len());
        let end = (end..=s.len()).find(|i| s.is_char_boundary(*i)).unwrap_or(s.len());
        s.replace_range(at..end, &insert);
        check_migrate(&s.replace('\n', nl));
    }

    #[test]
    fn arbitrary_overrides_never_panic(key in "[a-z_.~+0-9]{0,40}", value in "\\PC{0,40}") {
        check(SEED, &[format!("{key}={value}")]);
    }
}

#[test]
fn alias_bombs_are_refused() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        text.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n",
            p = i - 1
        ));
    }
    let sources = Sources::new();
    let err = config::load_text(Path::new("bomb.yaml"), &text, &[], &sources, &no_env).unwrap_err();
    assert!(err.diagnostics[0].message.starts_with("document too large"), "{:?}", err.diagnostics);
}

#[test]
fn deep_nesting_is_refused() {
    let text = format!("a: {}{}", "[".repeat(5000), "]".repeat(5000));
    let sources = Sources::new();
    let err = config::load_text(Path::new("deep.yaml"), &text, &[], &sources, &no_env).unwrap_err();
    let msg = &err.diagnostics[0].message;
    assert!(msg.contains("nesting too deep") || msg.contains("recursion limit exceeded"), "{msg}");
}
