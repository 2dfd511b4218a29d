//! Property tests over the loader: no input, however malformed, panics; a
//! failure always carries at least one error.

use std::path::Path;

use evalctl::config;
use evalctl::diag::Sources;
use proptest::prelude::*;

const SEED: &str = include_str!("../examples/slurm_llama_3_1_8b_instruct.yaml");

fn no_env(_: &str) -> Option<String> {
    None
}

fn check(text: &str, overrides: &[String]) {
    let sources = Sources::new();
    match config::load_text(Path::new("fuzz.yaml"), text, overrides, &sources, &no_env) {
        Ok(_) => {}
        Err(f) => {
            assert!(f.diagnostics.iter().any(|d| d.is_error()), "failure without an error");
            for d in &f.diagnostics {
                let _ = d.render(&sources);
            }
        }
    }
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
        "[a-z_.]{1,12}",
        "[0-9:]{1,9}",
        any::<String>(),
    ]
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
