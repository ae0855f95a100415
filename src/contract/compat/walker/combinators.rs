//! `allOf`, `anyOf` and `oneOf` in the walk. Branches kept in place are compared pairwise; a
//! branch added to or removed from an `allOf` (a conjunction) is judged by whether the other side
//! already implies it; an `anyOf` (a disjunction) gaining branches only widens, losing them only
//! narrows; any change to a `oneOf` (exactly one) cannot be judged.

use serde_json::{Map, Value};

use super::{At, READERS, SENDERS, Side, Walker};

impl<'a> Walker<'a> {
    pub(super) fn combinators(
        &mut self,
        path: &str,
        old: &At<'a>,
        new: &At<'a>,
        om: &'a Map<String, Value>,
        nm: &'a Map<String, Value>,
    ) {
        let o = |key: &str| old.key(om, key);
        let n = |key: &str| new.key(nm, key);
        let branches =
            |map: &'a Map<String, Value>, at: &dyn Fn(&str) -> At<'a>, keyword: &str| -> Vec<At<'a>> {
                let count = map.get(keyword).and_then(Value::as_array).map_or(0, Vec::len);
                (0..count).map(|index| at(keyword).item(index)).collect()
            };
        for keyword in ["allOf", "anyOf", "oneOf"] {
            let (a, b) =
                (om.get(keyword).and_then(Value::as_array), nm.get(keyword).and_then(Value::as_array));
            match (a, b) {
                (None, None) => {}
                // Pairwise: a conjunction (allOf) or a disjunction (anyOf) of wider parts is wider.
                (Some(a), Some(b)) if a.len() == b.len() && keyword != "oneOf" => {
                    for index in 0..a.len() {
                        self.walk(path, o(keyword).item(index), n(keyword).item(index));
                    }
                }
                (Some(a), Some(b)) if a.len() == b.len() => {
                    let mut inner = Vec::new();
                    for index in 0..a.len() {
                        inner.extend(self.walk_apart(path, o(keyword).item(index), n(keyword).item(index)));
                    }
                    if !inner.is_empty() {
                        self.cannot_judge(path, "a `oneOf` branch changed".into());
                    }
                }
                _ if keyword == "allOf" => {
                    let (old_branches, new_branches) = (branches(om, &o, keyword), branches(nm, &n, keyword));
                    // new = (the rest of new) and every new branch: a branch the old schema does
                    // not imply refuses something it accepted. Symmetrically for readers.
                    for branch in new_branches.iter().filter(|branch| !contains(&old_branches, branch)) {
                        self.implied(path, old.clone(), branch.clone(), "`allOf` branch added", SENDERS);
                    }
                    for branch in old_branches.iter().filter(|branch| !contains(&new_branches, branch)) {
                        self.implied(path, new.clone(), branch.clone(), "`allOf` branch removed", READERS);
                    }
                }
                _ if keyword == "anyOf" => {
                    let (old_branches, new_branches) = (branches(om, &o, keyword), branches(nm, &n, keyword));
                    let kept_all =
                        |from: &[At<'a>], to: &[At<'a>]| from.iter().all(|branch| contains(to, branch));
                    match (a, b) {
                        (Some(_), Some(_)) if kept_all(&old_branches, &new_branches) => {
                            self.push(path, "`anyOf` branch added (more alternatives)".into(), READERS);
                        }
                        (Some(_), Some(_)) if kept_all(&new_branches, &old_branches) => {
                            self.push(path, "`anyOf` branch removed (fewer alternatives)".into(), SENDERS);
                        }
                        // Added: nothing breaks senders when the old schema implies one branch; otherwise the
                        // branches together may still take every old payload.
                        (None, Some(_)) => {
                            if !new_branches
                                .iter()
                                .any(|branch| self.implies(path, old.clone(), branch.clone()))
                            {
                                self.cannot_judge(
                                    path,
                                    "`anyOf` added: no one branch takes every old payload".into(),
                                );
                            }
                        }
                        (Some(_), None) => {
                            if !old_branches
                                .iter()
                                .any(|branch| self.implies(path, new.clone(), branch.clone()))
                            {
                                self.cannot_judge(
                                    path,
                                    "`anyOf` removed: no one old branch takes every new payload".into(),
                                );
                            }
                        }
                        _ => self.cannot_judge(path, "`anyOf` branches changed".into()),
                    }
                }
                (None, Some(_)) => self.cannot_judge(path, format!("`{keyword}` added")),
                (Some(_), None) => self.cannot_judge(path, format!("`{keyword}` removed")),
                (Some(_), Some(_)) => self.cannot_judge(path, format!("`{keyword}` changed in length")),
            }
        }
    }

    /// Whether every payload `schema` accepts meets `branch` as far as the walk can tell (walking
    /// `schema` to `branch` finds nothing that would break senders).
    fn implies(&mut self, path: &str, schema: At<'a>, branch: At<'a>) -> bool {
        !self.walk_apart(path, schema, branch).iter().any(|change| change.breaks.contains(&Side::Senders))
    }

    /// Reports `what` as breaking `side` when `schema` does not imply `branch` (a conjunct added
    /// to or removed from the other side); "cannot judge" when the walk could not tell.
    fn implied(&mut self, path: &str, schema: At<'a>, branch: At<'a>, what: &str, side: &'static [Side]) {
        let refusing: Vec<_> = self
            .walk_apart(path, schema, branch)
            .into_iter()
            .filter(|change| change.breaks.contains(&Side::Senders))
            .collect();
        if refusing.is_empty() {
            return;
        }
        let reasons: Vec<&str> = refusing.iter().map(|change| change.change.as_str()).collect();
        let change = format!("{what} ({})", reasons.join("; "));
        if refusing.iter().any(|change| change.breaks.len() > 1) {
            self.cannot_judge(path, change);
        } else {
            self.push(path, change, side);
        }
    }
}

/// Whether a list of branches holds one equal to `branch` (as JSON).
fn contains(branches: &[At<'_>], branch: &At<'_>) -> bool {
    branches.iter().any(|other| other.value == branch.value)
}
