//! `diff OLD NEW`: the plan that would take a stack from one config to
//! another, without a cluster: the old config is treated as if it had been
//! applied and were still pending.

use std::collections::BTreeMap;
use std::path::Path;

use super::{Reporter, Silent, compile};
use crate::diag::Sources;
use crate::error::Result;
use crate::plan::{self, Observation, Plan, Seen};
use crate::state::{Observed, State, UnitState};

pub fn diff(old: &Path, new: &Path, overrides: &[String], sources: &Sources, reporter: &dyn Reporter) -> Result<Plan> {
    let new_c = compile(new, overrides, sources, reporter)?;
    let mut old_c = compile(old, overrides, sources, reporter)?;
    // Two versions of one file compare as one stack, whatever their file names.
    if old_c.loaded.config.name.is_none()
        && new_c.loaded.config.name.is_none()
        && old_c.loaded.stack != new_c.loaded.stack
    {
        let mut named = overrides.to_vec();
        named.push(format!("+name={}", new_c.loaded.stack));
        old_c = compile(old, &named, sources, &Silent)?;
    }
    let (old_r, new_r) = (&old_c.rendered, &new_c.rendered);
    let mut st = State::new(&new_r.stack);
    let mut obs = BTreeMap::new();
    for u in plan::units(old_r) {
        st.units.insert(
            u.id.clone(),
            UnitState {
                kind: u.kind,
                script_hash: u.script_hash.clone(),
                result_hash: u.result_hash.clone(),
                scripts: u.scripts(),
                attempts: 1,
                observed: Observed::Pending,
                ..Default::default()
            },
        );
        obs.insert(u.id.clone(), Observation { observed: Observed::Pending, ..Default::default() });
    }
    let max = new_c.max_attempts();
    let seen = Seen { observations: obs, state: st, target: "diff".into(), offline: true, notes: vec![] };
    let mut p = plan::make(new_r, max, &[], &plan::Targets::default(), seen).plan;
    let mut old_values = plan::causes::recorded(&plan::causes::values(&old_c.loaded.tree, sources));
    // The name given to the old config above is not a change of the user's.
    if new_c.loaded.config.name.is_none() {
        old_values.remove("name");
    }
    let new_values = plan::causes::values(&new_c.loaded.tree, sources);
    p.causes = super::plan::config_causes(&new_c.loaded, &new_values, &old_values, &p);
    Ok(p)
}
