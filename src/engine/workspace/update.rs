//! A workspace's name and labels: the rules they follow (creation applies
//! them too) and `update`, which renames and relabels a workspace.

use super::expiry;
use super::results::Updated;
use super::review::{self, Event};
use super::store::{self, WorkspaceState};
use super::view::{describe, load_checked};
use super::{now, EngineError, Result};
use std::collections::BTreeMap;

pub fn normalize_name(name: &str) -> Result<String> {
    let n = name.trim();
    if n.is_empty() {
        return Err(EngineError::Invalid("name must not be empty".into()));
    }
    if n.chars().count() > 120 {
        return Err(EngineError::Invalid(
            "name must be at most 120 characters".into(),
        ));
    }
    if n.chars().any(|c| c.is_control()) {
        return Err(EngineError::Invalid(
            "name must not contain control characters".into(),
        ));
    }
    Ok(n.to_string())
}

pub fn normalize_label_key(key: &str) -> Result<String> {
    let k = key.trim();
    let ok = !k.is_empty()
        && k.len() <= 64
        && k.as_bytes()[0].is_ascii_alphanumeric()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !ok {
        return Err(EngineError::Invalid(format!(
            "label key {key:?} must be 1-64 characters of A-Z a-z 0-9 . _ - starting with a letter or digit"
        )));
    }
    Ok(k.to_string())
}

pub fn normalize_labels(labels: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (k, v) in labels {
        let key = normalize_label_key(k)?;
        let val = v.trim();
        if val.is_empty() || val.chars().count() > 120 || val.contains(['\n', '\r']) {
            return Err(EngineError::Invalid(format!(
                "label {key:?} must have a value of 1-120 characters on one line"
            )));
        }
        out.insert(key, val.to_string());
    }
    Ok(out)
}

pub fn update(
    id: &str,
    name: Option<String>,
    clear_name: bool,
    labels: BTreeMap<String, String>,
    clear_labels: Vec<String>,
) -> Result<Updated> {
    if name.is_some() && clear_name {
        return Err(EngineError::Invalid(
            "name and clear_name cannot be used together".into(),
        ));
    }
    let name = name.map(|n| normalize_name(&n)).transpose()?;
    let labels = normalize_labels(&labels)?;
    let clear: Vec<String> = clear_labels
        .iter()
        .map(|k| normalize_label_key(k))
        .collect::<Result<_>>()?;
    let _lock = store::lock(id, "update")?;
    let _store = store::lock_store()?;
    let mut r = load_checked(id)?;
    let mut changed = Vec::new();
    if clear_name && r.name.is_some() {
        r.name = None;
        changed.push("name".to_string());
    }
    if let Some(n) = name {
        if r.name.as_deref() != Some(n.as_str()) {
            if let Some(other) = store::list_records()?
                .into_iter()
                .find(|o| o.name.as_deref() == Some(n.as_str()) && o.workspace_id != r.workspace_id)
            {
                return Err(EngineError::Invalid(format!(
                    "a workspace named {n:?} already exists ({}); pick another name",
                    other.workspace_id
                )));
            }
            r.name = Some(n);
            changed.push("name".into());
        }
    }
    for (k, v) in labels {
        if r.labels.get(&k) != Some(&v) {
            r.labels.insert(k.clone(), v);
            changed.push(format!("labels.{k}"));
        }
    }
    for k in clear {
        if r.labels.remove(&k).is_some() {
            changed.push(format!("labels.{k}"));
        }
    }
    if changed.is_empty() {
        return Err(EngineError::Invalid(
            "workspace update requested no effective change (give a new name, labels, clear_name or clear_labels)".into(),
        ));
    }
    if r.state == WorkspaceState::Expired {
        // Any operation ends the expiry; the VM boots when one needs it.
        r.state = WorkspaceState::Stopped;
        expiry::clear_expiry(&mut r);
    }
    r.stamp_activity(now());
    store::save(&r)?;
    review::append(id, &Event::new("update").with("changed", changed));
    Ok(Updated(describe(&r)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_labels_are_validated() {
        assert_eq!(normalize_name("  alpha ").unwrap(), "alpha");
        assert!(normalize_name(" ").is_err());
        assert!(normalize_name(&"x".repeat(121)).is_err());
        let mut l = BTreeMap::new();
        l.insert("issue".to_string(), " 123 ".to_string());
        assert_eq!(normalize_labels(&l).unwrap()["issue"], "123");
        l.insert("-bad".to_string(), "x".to_string());
        assert!(normalize_labels(&l)
            .unwrap_err()
            .to_string()
            .contains("-bad"));
        let mut l = BTreeMap::new();
        l.insert("k".to_string(), "two\nlines".to_string());
        assert!(normalize_labels(&l).is_err());
    }
}
