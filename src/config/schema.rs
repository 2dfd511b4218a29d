//! JSON Schema of the config, generated from the typed model.
//!
//! Two flavours: draft 2020-12 (what `validate` checks a composed config
//! against) and draft-07 for editors (the widest yaml-language-server
//! support), which also accepts `${...}` interpolations and `???` in typed
//! fields and requires nothing but a task's `name`, because an editor sees a
//! file before its defaults are merged in.

use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use super::model::Config;

/// Which schema flavour to produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Draft {
    /// JSON Schema 2020-12: the schema `validate` uses.
    D2020_12,
    /// JSON Schema draft-07 for editors: also accepts `${...}` and `???`.
    D07,
}

const ID_2020: &str = "https://evalctl.dev/schemas/evalctl.schema.json";
const ID_07: &str = "https://evalctl.dev/schemas/evalctl.draft-07.schema.json";

/// The schema as JSON.
pub fn schema(draft: Draft) -> Value {
    let settings = match draft {
        Draft::D2020_12 => SchemaSettings::draft2020_12(),
        Draft::D07 => SchemaSettings::draft07(),
    };
    let mut v = settings.into_generator().into_root_schema_for::<Config>().to_value();
    if let Value::Object(o) = &mut v {
        o.insert("title".into(), json!("evalctl config"));
        let id = if draft == Draft::D07 { ID_07 } else { ID_2020 };
        let mut ordered = Map::new();
        for k in ["$schema", "$id", "title"] {
            match k {
                "$id" => {
                    ordered.insert(k.into(), json!(id));
                }
                _ => {
                    if let Some(x) = o.remove(k) {
                        ordered.insert(k.into(), x);
                    }
                }
            }
        }
        ordered.extend(std::mem::take(o));
        *o = ordered;
    }
    if draft == Draft::D07 {
        editor_flavour(&mut v);
    }
    v
}

/// Pretty JSON text with a trailing newline, as committed under `schemas/`.
pub fn schema_text(draft: Draft) -> String {
    let mut s = serde_json::to_string_pretty(&schema(draft)).unwrap_or_default();
    s.push('\n');
    s
}

const INTERP: &str = "Interpolation";

fn editor_flavour(root: &mut Value) {
    let defs_snapshot = root.get("definitions").cloned().unwrap_or(Value::Null);
    let object_defs: Vec<String> = defs_snapshot
        .as_object()
        .map(|d| {
            d.iter()
                .filter(|(_, s)| s.get("type") == Some(&json!("object")))
                .map(|(k, _)| format!("#/definitions/{k}"))
                .collect()
        })
        .unwrap_or_default();
    relax(root, &object_defs);
    if let Some(defs) = root.get_mut("definitions").and_then(Value::as_object_mut) {
        for (_, d) in defs.iter_mut() {
            relax(d, &object_defs);
        }
        // Hover shows the innermost description: let the fields' own docs
        // speak for these shared value types.
        for name in ["SlurmTime", "Duration"] {
            if let Some(d) = defs.get_mut(name).and_then(Value::as_object_mut) {
                d.remove("description");
            }
        }
        // A new task block, offered by editors inside `evaluation.tasks`.
        if let Some(task) = defs.get_mut("Task").and_then(Value::as_object_mut) {
            task.insert(
                "defaultSnippets".into(),
                json!([{
                    "label": "evaluation task",
                    "description": "A benchmark from `evalctl tasks`, with per-task settings",
                    "body": { "name": "${1:gsm8k}", "nemo_evaluator_config": { "config": { "params": { "limit_samples": "^${2:null}" } } } }
                }]),
            );
        }
        defs.insert(
            INTERP.into(),
            json!({
                "description": "An interpolation such as `${oc.env:HF_TOKEN}` or `${deployment.port}`, or `???` for a value given later (with `-o`).",
                "type": "string",
                "pattern": "^(\\?\\?\\?|.*\\$\\{.*\\}.*)$"
            }),
        );
    }
}

/// Drops `required` (except a task's `name`) and lets typed sub-schemas also
/// take an interpolation.
fn relax(schema: &mut Value, object_defs: &[String]) {
    let Some(o) = schema.as_object_mut() else {
        return;
    };
    if let Some(Value::Array(req)) = o.get_mut("required") {
        // Only a task requires `name`, so keeping `name` keeps exactly that.
        req.retain(|r| r == "name");
    }
    if let Some(Value::Array(req)) = o.get("required")
        && req.is_empty()
    {
        o.remove("required");
    }
    for key in ["properties", "patternProperties"] {
        if let Some(Value::Object(props)) = o.get_mut(key) {
            for (_, p) in props.iter_mut() {
                relax(p, object_defs);
                wrap(p, object_defs);
            }
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(p) = o.get_mut(key)
            && p.is_object()
        {
            relax(p, object_defs);
            wrap(p, object_defs);
        }
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(list)) = o.get_mut(key) {
            for p in list.iter_mut() {
                relax(p, object_defs);
            }
        }
    }
}

/// `S` → `{description, anyOf: [S, Interpolation]}` unless S is a plain
/// string, an object or a list (where an anyOf would blur the errors
/// editors show inside them).
fn wrap(p: &mut Value, object_defs: &[String]) {
    let Some(o) = p.as_object() else { return };
    let plain_string = o.get("type") == Some(&json!("string")) && !o.contains_key("enum") && !o.contains_key("pattern");
    let is_object = o.get("type") == Some(&json!("object"))
        || o.get("type") == Some(&json!("array"))
        || o.get("$ref")
            .or_else(|| o.get("allOf").and_then(|a| a.get(0)).and_then(|x| x.get("$ref")))
            .and_then(Value::as_str)
            .is_some_and(|r| object_defs.iter().any(|d| d == r));
    let nullable_object = o.get("anyOf").and_then(Value::as_array).is_some_and(|l| {
        l.iter().any(|s| s.get("$ref").and_then(Value::as_str).is_some_and(|r| object_defs.iter().any(|d| d == r)))
    });
    let open = o.is_empty()
        || o.get("type").is_none()
            && o.get("$ref").is_none()
            && o.get("anyOf").is_none()
            && o.get("allOf").is_none()
            && o.get("enum").is_none();
    if plain_string || is_object || nullable_object || open {
        return;
    }
    let mut inner = std::mem::take(p);
    let mut outer = Map::new();
    if let Some(obj) = inner.as_object_mut() {
        for k in ["description", "default", "title"] {
            if let Some(v) = obj.remove(k) {
                outer.insert(k.into(), v);
            }
        }
    }
    // Editors show the description of the branch that matched: give a
    // referenced type the field's own description.
    if let Some(d) = outer.get("description").cloned() {
        describe_refs(&mut inner, &d);
    }
    outer.insert("anyOf".into(), json!([inner, { "$ref": format!("#/definitions/{INTERP}") }]));
    *p = Value::Object(outer);
}

/// `{"$ref": R}` → `{"allOf": [{"$ref": R}], "description": D}`, also inside an `anyOf`.
fn describe_refs(v: &mut Value, description: &Value) {
    let Some(o) = v.as_object_mut() else { return };
    if let Some(r) = o.get("$ref").cloned()
        && o.len() == 1
    {
        *v = json!({ "allOf": [{ "$ref": r }], "description": description });
        return;
    }
    if o.contains_key("allOf") && !o.contains_key("description") {
        o.insert("description".into(), description.clone());
    }
    if let Some(Value::Array(list)) = o.get_mut("anyOf") {
        for item in list {
            describe_refs(item, description);
        }
    }
}
