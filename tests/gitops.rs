//! The GitOps examples are what their comments say: the GitHub workflow
//! plans pull requests and applies merges one at a time (actionlint checks
//! it in scripts/test.sh), the GitLab pipeline parses and does the same.

use evalctl::config::node::{Node, Seg, Value};
use evalctl::diag::{SourceId, Sources};

fn load(path: &str) -> Node {
    let text = std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let sources = Sources::new();
    let id: SourceId = sources.add(path, text.clone());
    evalctl::config::yaml::parse(&text, id).unwrap_or_else(|d| panic!("{}", d.render(&sources)))
}

fn at<'a>(n: &'a Node, path: &str) -> &'a Node {
    let segs = evalctl::config::node::parse_dotted(path);
    n.get(&segs).unwrap_or_else(|| panic!("no `{path}`"))
}

fn text_of(n: &Node) -> String {
    let mut out = String::new();
    n.walk(&mut vec![], &mut |_: &[Seg], x: &Node| {
        if let Value::Str(s) = &x.value {
            out.push_str(s);
            out.push('\n');
        }
    });
    out
}

#[test]
fn github_workflow_plans_pull_requests_and_applies_merges_one_at_a_time() {
    let w = load("examples/ci/github-actions.yml");
    let plan = at(&w, "jobs.plan");
    assert_eq!(at(plan, "if").as_str(), Some("github.event_name == 'pull_request'"));
    let plan_text = text_of(plan);
    assert!(plan_text.contains("evalctl plan \"$EVALCTL_CONFIG\" --format markdown --detailed-exitcode"));
    assert!(plan_text.contains("createComment") && plan_text.contains("updateComment"));
    let apply = at(&w, "jobs.apply");
    assert_eq!(at(apply, "concurrency.group").as_str(), Some("evalctl-apply"));
    assert_eq!(at(apply, "concurrency.cancel-in-progress").value, Value::Bool(false));
    let apply_text = text_of(apply);
    assert!(apply_text.contains("evalctl apply \"$EVALCTL_CONFIG\" --auto-approve"));
    assert!(apply_text.contains("${{ secrets.HF_TOKEN }}"), "secrets come from the CI secret store");
}

#[test]
fn gitlab_pipeline_parses_and_mirrors_the_workflow() {
    let p = load("examples/ci/gitlab-ci.yml");
    let stages: Vec<&str> = match &at(&p, "stages").value {
        Value::Seq(v) => v.iter().filter_map(Node::as_str).collect(),
        _ => panic!("stages is a list"),
    };
    assert_eq!(stages, ["plan", "apply"]);
    assert!(text_of(at(&p, "plan")).contains("--format markdown --detailed-exitcode"));
    assert_eq!(at(&p, "apply.resource_group").as_str(), Some("evalctl-apply"));
    assert!(text_of(at(&p, "apply")).contains("evalctl apply \"$EVALCTL_CONFIG\" --auto-approve"));
    assert_eq!(at(&p, "plan.rules.0.if").as_str(), Some("$CI_PIPELINE_SOURCE == \"merge_request_event\""));
}

#[test]
fn ci_examples_plan_the_config_folder_changed_since_the_base_into_one_comment() {
    let w = load("examples/ci/github-actions.yml");
    assert_eq!(at(&w, "env.EVALCTL_CONFIG").as_str(), Some("evals"), "the folder of configs");
    let plan = at(&w, "jobs.plan");
    assert!(text_of(plan).contains("--changed-since \"origin/$BASE_REF\""));
    assert_eq!(at(plan, "steps.0.with.fetch-depth").value, Value::Int(0), "the base's history is fetched");
    assert_eq!(at(plan, "steps.3.env.BASE_REF").as_str(), Some("${{ github.base_ref }}"));
    let p = load("examples/ci/gitlab-ci.yml");
    assert_eq!(at(&p, "variables.EVALCTL_CONFIG").as_str(), Some("evals"));
    assert!(text_of(at(&p, "plan")).contains("--changed-since \"$CI_MERGE_REQUEST_DIFF_BASE_SHA\""));
}
