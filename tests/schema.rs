//! The committed schemas are the generated ones, and the editor flavour
//! accepts what real configs contain before composition.

use evalctl::config::schema::{Draft, schema, schema_text};

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn committed_schemas_are_up_to_date() {
    for (draft, file) in
        [(Draft::D2020_12, "schemas/evalctl.schema.json"), (Draft::D07, "schemas/evalctl.draft-07.schema.json")]
    {
        let committed = std::fs::read_to_string(root().join(file)).unwrap_or_default();
        assert!(
            committed == schema_text(draft),
            "{file} is stale: run `cargo run -- schema{} > {file}`",
            if draft == Draft::D07 { " --draft 07" } else { "" }
        );
    }
}

#[test]
fn schemas_are_valid_for_their_drafts() {
    let s2020 = schema(Draft::D2020_12);
    assert_eq!(s2020["$schema"], "https://json-schema.org/draft/2020-12/schema");
    assert!(jsonschema::meta::is_valid(&s2020));
    let s07 = schema(Draft::D07);
    assert_eq!(s07["$schema"], "http://json-schema.org/draft-07/schema#");
    assert!(jsonschema::meta::is_valid(&s07));
    // Doc comments become descriptions (hover text).
    let walltime = &s07["definitions"]["Execution"]["properties"]["walltime"];
    assert!(walltime["description"].as_str().unwrap().contains("Unquoted `10:00:00` means ten hours"));
}

/// Every example and fixture, as written (with `${...}`, `???` and a
/// `defaults` list), passes the editor schema: no false red squiggles.
#[test]
fn editor_schema_accepts_raw_configs() {
    let v = jsonschema::draft7::new(&schema(Draft::D07)).unwrap();
    let mut files = vec![];
    for dir in ["examples", "tests/fixtures"] {
        for e in std::fs::read_dir(root().join(dir)).unwrap().flatten() {
            if e.path().extension().is_some_and(|x| x == "yaml") {
                files.push(e.path());
            }
        }
    }
    assert!(files.len() >= 5);
    let raw_with_missing = "execution: {hostname: ???, account: ???, output_dir: ???, num_nodes: '${oc.env:NODES}', walltime: 02:00:00}\n\
        deployment: {checkpoint_path: ???, port: '${oc.env:PORT,8000}', type: vllm}\nevaluation: {tasks: [{name: gsm8k}]}\n";
    let mut texts: Vec<(String, String)> =
        files.iter().map(|f| (f.display().to_string(), std::fs::read_to_string(f).unwrap())).collect();
    texts.push(("inline".into(), raw_with_missing.into()));
    for (name, text) in texts {
        let sources = evalctl::diag::Sources::new();
        let id = sources.add(name.clone(), text.clone());
        let json = evalctl::config::yaml::parse(&text, id).unwrap().to_editor_json();
        let errors: Vec<String> = v.iter_errors(&json).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        assert!(errors.is_empty(), "{name}: {errors:?}");
    }
    // And it still catches real mistakes.
    let bad =
        serde_json::json!({"execution": {"num_nodes": "two", "walltme": "1"}, "evaluation": {"tasks": [{"nam": "x"}]}});
    let errors: Vec<String> = v.iter_errors(&bad).map(|e| e.to_string()).collect();
    assert_eq!(errors.len(), 4, "{errors:?}");
}

#[test]
fn committed_config_reference_is_up_to_date() {
    let committed = std::fs::read_to_string(root().join("docs/config.md")).unwrap_or_default();
    assert!(
        committed == evalctl::config::reference::markdown(),
        "docs/config.md is stale: run `cargo run -- schema --format markdown > docs/config.md`"
    );
    assert!(committed.contains("| `walltime` |"), "the reference lists execution keys");
}
