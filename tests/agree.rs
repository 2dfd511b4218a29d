//! `validate` and `plan --offline` agree on every config of the test corpus:
//! the same exit status, and when they fail, the same first error. A config
//! `validate` accepts is one `plan` (and so CI and `apply`) accepts.
//!
//! The corpus: the fixtures, the malformed and hostile corpora, the
//! examples; each config with the `-o` overrides and environment its header
//! names (`# override:`, `# env:`).

mod corpus;

/// Every config of the corpus, relative to the crate root.
fn configs() -> Vec<String> {
    let mut all = vec![];
    for dir in ["tests/fixtures", "examples"] {
        let mut names: Vec<String> = std::fs::read_dir(corpus::root().join(dir))
            .unwrap()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".yaml"))
            .map(|n| format!("{dir}/{n}"))
            .collect();
        names.sort();
        all.extend(names);
    }
    for dir in ["tests/malformed", "tests/hostile"] {
        all.extend(corpus::cases(dir).0);
    }
    all
}

/// How `validate` and `plan --offline` differ on a config, if they do.
fn disagreement(rel: &str) -> Option<String> {
    let text = std::fs::read_to_string(corpus::root().join(rel)).unwrap();
    let overrides = corpus::directive(&text, "override");
    let env = corpus::env_pairs(&text);
    let v = corpus::evalctl(&["validate"], rel, &overrides, &env);
    let p = corpus::evalctl(&["plan", "--offline"], rel, &overrides, &env);
    let (v_first, p_first) = (v.errors().into_iter().next(), p.errors().into_iter().next());
    if v.code == p.code && v_first == p_first {
        return None;
    }
    Some(format!(
        "validate exited {:?} ({}), plan --offline {:?} ({})",
        v.code,
        v_first.unwrap_or_else(|| "no error".into()),
        p.code,
        p_first.unwrap_or_else(|| "no error".into())
    ))
}

#[test]
fn validate_and_offline_plan_agree_on_every_config() {
    let configs = configs();
    assert!(configs.len() > 150, "only {} configs found", configs.len());
    // Two runs of the binary per config: spread over a few threads.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(vec![]);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                while let Some(rel) = configs.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) {
                    if let Some(why) = disagreement(rel) {
                        failures.lock().unwrap().push(format!("{rel}: {why}"));
                    }
                }
            });
        }
    });
    let mut failures = failures.into_inner().unwrap();
    failures.sort();
    assert!(failures.is_empty(), "{} of {} configs:\n{}", failures.len(), configs.len(), failures.join("\n"));
}

/// The property can fail: a config `plan` refuses for a reason `validate`
/// does not check (here, a saved state file that cannot be read) shows up.
#[test]
fn a_disagreement_is_reported() {
    let dir = corpus::scratch("agree");
    let cfg = dir.join("s.yaml");
    std::fs::copy(corpus::root().join("examples/slurm_llama_3_1_8b_instruct.yaml"), &cfg).unwrap();
    std::fs::create_dir_all(dir.join(".evalctl")).unwrap();
    std::fs::write(dir.join(".evalctl/s.state.json"), "not json").unwrap();
    let why = disagreement(&cfg.display().to_string()).expect("plan reads the broken state, validate does not");
    assert!(why.starts_with("validate exited Some(0)"), "{why}");
    let _ = std::fs::remove_dir_all(&dir);
}
