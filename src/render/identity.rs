//! Hashes that say whether a job changed: the result hash (what determines
//! an evaluation's result: model, image, command, task, parameters, variable
//! names) and the script hash (every byte of the script), plus the digest of
//! the runtime every script carries. Plan compares them to decide what to
//! submit again; job tags carry them.

use serde_json::{Value as J, json};
use sha2::{Digest, Sha256};

use super::{RUNTIME, Script, placeholder};
use crate::config::env::{EnvVar, Source};
use crate::config::model::Deployment;

/// Lowercase hex of bytes (digests in hashes, tags and file names).
pub fn hex(d: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(d.len() * 2);
    for b in d {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// SHA-256 of a text, in hex.
pub(super) fn sha(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

fn runtime_digest_bytes() -> &'static [u8] {
    static RUNTIME_DIGEST: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    RUNTIME_DIGEST.get_or_init(|| Sha256::digest(RUNTIME.as_bytes()).to_vec())
}

/// Digest of the job runtime this evalctl renders into every script.
pub fn runtime_digest() -> String {
    hex(runtime_digest_bytes())
}

/// Hash of a script. The shared runtime, the same in every script, is
/// hashed once and counted by its digest, so hashing stays cheap for
/// thousands of jobs while any change of the script changes the hash.
pub(super) fn script_hash(script: &Script) -> String {
    let mut h = Sha256::new();
    h.update(script.before().as_bytes());
    h.update(runtime_digest_bytes());
    for piece in script.after_pieces() {
        h.update(piece.as_bytes());
    }
    hex(&h.finalize())
}

/// A job's result identity (a JSON value built by `lower`) as the compact
/// JSON text its hash is taken of. Both links of a chain share one: kept
/// as text, it is one allocation instead of a tree of them per job.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ResultIdentity {
    json: std::sync::Arc<str>,
    hash: String,
}

impl ResultIdentity {
    pub(super) fn new(value: &J) -> ResultIdentity {
        let json = serde_json::to_string(value).unwrap_or_default();
        ResultIdentity { hash: sha(&json), json: json.into() }
    }

    /// The result hash: what determines the job's result, hashed.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The identity as plain data (for naming what differs between two
    /// results).
    pub fn value(&self) -> J {
        serde_json::from_str(&self.json).unwrap_or_default()
    }
}

/// What identifies a served model.
pub(super) fn model_identity(d: &Deployment) -> J {
    json!({
        "type": d.kind, "image": d.image, "checkpoint_path": d.checkpoint_path, "hf_model_handle": d.hf_model_handle,
        "served_model_name": d.served_model_name, "command": d.command, "pre_cmd": d.pre_cmd,
    })
}

/// Variable names and non-secret sources: secret values never.
pub(super) fn env_identity(vars: &[EnvVar]) -> J {
    J::Array(
        vars.iter()
            .map(|v| match (&v.source, v.secret) {
                (_, true) => json!([v.name, "secret"]),
                (Source::Literal { value }, false) => json!([v.name, "lit", value]),
                (Source::Runtime { var }, false) => json!([v.name, "runtime", var]),
                (s, false) => json!([v.name, placeholder(s)]),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_counts_by_its_digest() {
        assert_eq!(hex(&[0, 15, 255]), "000fff");
        let before = "#!/bin/bash\nset -uo pipefail\n\n";
        let script =
            |after: &str| Script::new([before, super::super::RUNTIME_ELIDED].concat(), before.len(), after.into());
        let (a, b) = (script("echo a\n"), script("echo b\n"));
        assert_ne!(script_hash(&a), script_hash(&b));
        assert_eq!(script_hash(&a), script_hash(&a.clone()));
        // The same bytes as hashing the text with the runtime's digest in its place.
        let mut h = Sha256::new();
        h.update(b"#!/bin/bash\nset -uo pipefail\n\n");
        h.update(Sha256::digest(RUNTIME.as_bytes()));
        h.update(b"echo a\n");
        assert_eq!(script_hash(&a), hex(&h.finalize()));
        assert_eq!(runtime_digest().len(), 64);
    }
}
