//! `evalctl migrate`: rewrite the older env-var dialect into the newer one,
//! editing the text in place so comments and layout survive.
//!
//! - `execution.env_vars.deployment` entries move to `deployment.env_vars`,
//!   `execution.env_vars.evaluation` entries to `evaluation.env_vars`;
//!   `${oc.env:VAR}` becomes `host:VAR`, a plain value `lit:VALUE`.
//! - Bare names in `evaluation.env_vars` and task `env_vars` (variables read
//!   where evalctl runs) become `host:NAME`.

use super::node::{Node, Seg, Value};
use super::yaml;
use crate::diag::{Diagnostic, Sources};

/// The rewritten text, and how many values changed.
pub struct Migrated {
    pub text: String,
    pub changes: usize,
    /// Values that became visible `lit:` literals (they were kept out of
    /// scripts before): the user should check none is a secret.
    pub warnings: Vec<Diagnostic>,
}

/// Rewrites `text` (a config file) into the newer dialect.
pub fn migrate(name: &str, text: &str, sources: &Sources) -> Result<Migrated, Diagnostic> {
    let id = sources.add(name, text);
    let root = yaml::parse(text, id)?;
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut changes = 0;
    let key = |k: &str| Seg::Key(k.to_owned());

    // 1. Bare names → host:NAME, in place.
    let mut sections: Vec<Vec<Seg>> = vec![vec![key("evaluation"), key("env_vars")]];
    if let Some(Value::Seq(tasks)) = root.get(&[key("evaluation"), key("tasks")]).map(|n| &n.value) {
        for i in 0..tasks.len() {
            sections.push(vec![key("evaluation"), key("tasks"), Seg::Index(i), key("env_vars")]);
        }
    }
    let mut edits: Vec<(usize, usize, usize, String)> = vec![];
    for sec in &sections {
        let Some(map) = root.get(sec).and_then(Node::as_map) else {
            continue;
        };
        for e in map.values() {
            let Some(new) = name_value(&e.node) else {
                continue;
            };
            let s = e.node.span;
            if let Some(line) = lines.get(s.line as usize - 1) {
                let start = char_to_byte(line, s.col as usize - 1);
                let end = char_to_byte(line, (s.col + s.width) as usize - 1);
                edits.push((s.line as usize - 1, start, end, scalar(&new)));
            }
        }
    }
    edits.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
    for (l, start, end, rep) in edits {
        lines[l].replace_range(start..end, &rep);
        changes += 1;
    }

    // 2. Move execution.env_vars.<group> entries to <group>.env_vars.
    let exec_env = [key("execution"), key("env_vars")];
    let mut moved: Vec<(&str, Vec<(String, String)>)> = vec![];
    let mut warnings = vec![];
    if let Some(groups) = root.get(&exec_env).and_then(Node::as_map) {
        for group in ["deployment", "evaluation"] {
            let Some(m) = groups.get(group).and_then(|e| e.node.as_map()) else {
                continue;
            };
            let entries: Vec<(String, String)> = m.iter().map(|(k, e)| (k.clone(), value_value(&e.node))).collect();
            for ((k, v), e) in entries.iter().zip(m.values()) {
                if v.starts_with("lit:") && !e.node.as_str().is_some_and(|s| s.starts_with("lit:")) {
                    warnings.push(
                        Diagnostic::warning(
                            e.node.span,
                            format!("`{k}` becomes the literal `lit:` value, visible in scripts and plans"),
                        )
                        .with_note("if it is a secret, export it where evalctl runs and write `host:VARIABLE` instead"),
                    );
                }
            }
            if !entries.is_empty() {
                moved.push((group, entries));
            }
        }
    }
    if let Some(entry_span) =
        root.get(&[key("execution")]).and_then(Node::as_map).and_then(|m| m.get("env_vars")).map(|e| e.key_span)
    {
        let start = entry_span.line as usize - 1;
        let end = block_end(&lines, start);
        // Inserts below happen after this deletion, on the new line numbers.
        lines.drain(start..=end);
        let removed = end - start + 1;
        let shift = |l: usize| if l > end { l - removed } else { l };
        for (group, entries) in &mut moved {
            // An entry the group already sets was overridden by it: drop it.
            let existing = root.get(&[key(group), key("env_vars")]).and_then(Node::as_map);
            entries.retain(|(k, _)| existing.is_none_or(|m| !m.contains_key(k)));
            if entries.is_empty() {
                continue;
            }
            changes += entries.len();
            insert_entries(&mut lines, &root, group, entries, &shift);
        }
        if moved.is_empty() {
            changes += 1;
        }
    }
    let mut text_out = lines.join("\n");
    if text.ends_with('\n') {
        text_out.push('\n');
    }
    Ok(Migrated { text: text_out, changes, warnings })
}

/// `host:NAME` for a bare variable name (or `${oc.env:NAME}`).
fn name_value(n: &Node) -> Option<String> {
    let s = n.as_str()?;
    if s.starts_with("host:") || s.starts_with("lit:") || s.starts_with("runtime:") {
        return None;
    }
    if let Some(var) = s.strip_prefix("${oc.env:").and_then(|r| r.strip_suffix('}'))
        && super::env::is_var_name(var)
    {
        return Some(format!("host:{var}"));
    }
    super::env::is_var_name(s).then(|| format!("host:{s}"))
}

/// The newer-dialect form of an older `execution.env_vars` value.
fn value_value(n: &Node) -> String {
    let text = match &n.value {
        Value::Str(s) | Value::Deferred(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => String::new(),
    };
    if text.starts_with("host:") || text.starts_with("lit:") || text.starts_with("runtime:") {
        return text;
    }
    if let Some(var) = text.strip_prefix("${oc.env:").and_then(|r| r.strip_suffix('}'))
        && super::env::is_var_name(var)
    {
        return format!("host:{var}");
    }
    if text.contains("${") { text } else { format!("lit:{text}") }
}

fn char_to_byte(s: &str, chars: usize) -> usize {
    s.char_indices().nth(chars).map_or(s.len(), |(b, _)| b)
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn is_content(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with('#')
}

/// Last line of the block that starts with the key on line `start`.
fn block_end(lines: &[String], start: usize) -> usize {
    let base = indent(&lines[start]);
    let mut end = start;
    for (i, l) in lines.iter().enumerate().skip(start + 1) {
        if is_content(l) {
            if indent(l) <= base && !l.trim_start().starts_with("- ") || indent(l) < base {
                break;
            }
            end = i;
        }
    }
    end
}

/// Appends `entries` to `<group>.env_vars`, creating what is missing.
fn insert_entries(
    lines: &mut Vec<String>,
    root: &Node,
    group: &str,
    entries: &[(String, String)],
    shift: &dyn Fn(usize) -> usize,
) {
    let key = |k: &str| Seg::Key(k.to_owned());
    let render = |pad: usize| -> Vec<String> {
        entries.iter().map(|(k, v)| format!("{}{}: {}", " ".repeat(pad), k, scalar(v))).collect()
    };
    let section = root.get(&[key(group)]).and_then(Node::as_map).map(|m| m.len());
    let sec_entry = root.as_map().and_then(|m| m.get(group));
    match (sec_entry, section) {
        (Some(sec), Some(_)) => {
            let sec_line = shift(sec.key_span.line as usize - 1);
            let child_pad =
                sec.node.as_map().and_then(|m| m.values().next()).map(|e| e.key_span.col as usize - 1).unwrap_or(2);
            if let Some(env) = sec.node.as_map().and_then(|m| m.get("env_vars")) {
                let env_line = shift(env.key_span.line as usize - 1);
                let end = block_end(lines, env_line);
                let pad = env
                    .node
                    .as_map()
                    .and_then(|m| m.values().next())
                    .map(|e| e.key_span.col as usize - 1)
                    .unwrap_or(child_pad + 2);
                if env.node.as_map().is_some_and(|m| m.is_empty()) {
                    // `env_vars: {}`: replace the line.
                    lines[env_line] = format!("{}env_vars:", " ".repeat(child_pad));
                }
                let at = end + 1;
                for (i, l) in render(pad).into_iter().enumerate() {
                    lines.insert(at + i, l);
                }
            } else {
                let end = block_end(lines, sec_line);
                let mut new = vec![format!("{}env_vars:", " ".repeat(child_pad))];
                new.extend(render(child_pad + 2));
                for (i, l) in new.into_iter().enumerate() {
                    lines.insert(end + 1 + i, l);
                }
            }
        }
        _ => {
            lines.push(format!("{group}:"));
            lines.push("  env_vars:".into());
            lines.extend(render(4));
        }
    }
}

/// A YAML scalar for `s`: plain when that reads back as the same string.
pub fn scalar(s: &str) -> String {
    let plain_ok = !s.is_empty()
        && !s.starts_with([
            ' ', '-', '?', ':', ',', '[', ']', '{', '}', '#', '&', '*', '!', '|', '>', '\'', '"', '%', '@', '`',
        ])
        && !s.ends_with([' ', ':'])
        && !s.contains(": ")
        && !s.contains(" #")
        && !s.contains(['\n', '\t'])
        && matches!(yaml::plain_scalar(s, Default::default()).value, Value::Str(_));
    if plain_ok { s.to_owned() } else { serde_json::to_string(s).unwrap_or_default() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_execution_env_vars_and_prefixes_names() {
        let src = "\
execution:
  account: a # keep me
  env_vars:
    deployment:
      HF_TOKEN: ${oc.env:HF_TOKEN}
      MODE: fast
    evaluation: {}
deployment:
  type: vllm
evaluation:
  tasks:
    - name: gpqa_diamond
      env_vars:
        HF_TOKEN: HF_TOKEN_FOR_GPQA # comment
";
        let m = migrate("t.yaml", src, &Sources::new()).unwrap();
        assert_eq!(
            m.text,
            "\
execution:
  account: a # keep me
deployment:
  type: vllm
  env_vars:
    HF_TOKEN: host:HF_TOKEN
    MODE: lit:fast
evaluation:
  tasks:
    - name: gpqa_diamond
      env_vars:
        HF_TOKEN: host:HF_TOKEN_FOR_GPQA # comment
"
        );
        assert_eq!(m.changes, 3);
    }

    #[test]
    fn scalars_quote_when_needed() {
        assert_eq!(scalar("host:X"), "host:X");
        assert_eq!(scalar("lit:a b"), "lit:a b");
        assert_eq!(scalar("true"), "\"true\"");
        assert_eq!(scalar("a: b"), "\"a: b\"");
        assert_eq!(scalar(""), "\"\"");
    }
}
