//! Classification: the security `action` of an event and whether it touched a file, a directory
//! or a symlink. Every rule is documented in `docs/classification.md`; keep the two in step.
//!
//! Object types are learned from the stream: operations that only apply to one kind of object
//! (`fs_create_directory`, `fs_list_directory`, `fs_read_data`, ...) record the `file_id`'s type in
//! a bounded two-generation map (an LRU approximation with a hard memory cap), so a later
//! `fs_delete` or `fs_rename` of that id is typed right.

use std::collections::HashMap;

use serde_json::Value;

use crate::event::{Action, Event, ObjectType};

/// Default number of file ids remembered (two generations of half that size each).
pub const DEFAULT_TYPE_CACHE_ENTRIES: usize = 1 << 18;

/// The type cache's keys are already xxh3 hashes of (cluster, file id): hashing them again with
/// SipHash would only cost time, so the map uses them as they are.
#[derive(Default, Clone, Copy)]
pub struct PrehashedKey(u64);

impl std::hash::Hasher for PrehashedKey {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed (write_u64); fold anything else in case that ever changes.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type IdMap = HashMap<u64, ObjectType, std::hash::BuildHasherDefault<PrehashedKey>>;

/// The bounded id -> type map. Lookups hit the young generation, then the old one (promoting
/// the entry); when the young generation is full it becomes the old one and the previous old
/// generation is dropped. Memory is capped at about `capacity` entries (~24 bytes each).
pub struct TypeCache {
    young: IdMap,
    old: IdMap,
    generation_size: usize,
}

impl TypeCache {
    pub fn new(capacity: usize) -> TypeCache {
        let generation_size = (capacity / 2).max(1);
        TypeCache { young: IdMap::default(), old: IdMap::default(), generation_size }
    }

    pub fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn insert(&mut self, id: u64, ty: ObjectType) {
        if self.young.len() >= self.generation_size && !self.young.contains_key(&id) {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(id, ty);
    }

    pub fn get(&mut self, id: u64) -> Option<ObjectType> {
        if let Some(t) = self.young.get(&id) {
            return Some(*t);
        }
        let t = self.old.remove(&id)?;
        self.insert(id, t);
        Some(t)
    }

    pub fn remove(&mut self, id: u64) {
        self.young.remove(&id);
        self.old.remove(&id);
    }
}

/// The action an operation maps to by name alone (`fs_write_metadata` is refined later).
pub fn action_for_operation(op: &str) -> Action {
    match op {
        "fs_create_file" | "fs_create_directory" | "fs_create_directories" | "fs_create_symlink"
        | "fs_create_stream" | "fs_create" => Action::Create,
        "fs_create_hard_link" => Action::Link,
        "fs_read_data" => Action::Read,
        "fs_write_data" | "fs_copy_chunk" => Action::Write,
        "fs_delete" | "fs_tree_delete" => Action::Delete,
        "fs_rename" => Action::Rename,
        "fs_read_metadata" | "fs_read_user_metadata" | "fs_read_link" | "fs_fsstat" => Action::ReadMetadata,
        "fs_write_metadata" | "fs_write_user_metadata" | "fs_write_file_lock" | "fs_set_quota" => {
            Action::WriteMetadata
        }
        "fs_list_directory" => Action::List,
        "fs_open" => Action::Open,
        "ftp_login" | "nfs_mount" | "rest_login" | "share_connect" | "smb_login" => Action::Login,
        "smb_close_handle" | "smb_close_session" | "smb2_notify_req" => Action::Other,
        // REST operations whose names start with fs_ but configure the cluster.
        "fs_create_public_key" | "fs_delete_public_key" | "fs_modify_atime_settings"
        | "fs_modify_notify_settings" | "fs_modify_permissions_settings" | "fs_modify_public_key"
        | "fs_release_nlm_locks_by_client" | "fs_release_nlm_locks_by_file" | "fs_replace_public_key"
        | "fs_sample" => Action::Admin,
        _ if op.starts_with("fs_") => Action::Other,
        "" => Action::Other,
        // Everything else Qumulo lists is a REST/config operation (auth_*, smb_create_share,
        // snapshot_*, remote_syslog_*, begin_* ...).
        _ if op.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') => Action::Admin,
        _ => Action::Other,
    }
}

/// The object type an operation implies by itself, if any.
fn type_implied_by_operation(op: &str) -> Option<ObjectType> {
    match op {
        "fs_create_directory" | "fs_create_directories" | "fs_list_directory" => Some(ObjectType::Directory),
        "fs_create_file" | "fs_read_data" | "fs_write_data" | "fs_copy_chunk" | "fs_create_stream" => {
            Some(ObjectType::File)
        }
        "fs_create_symlink" | "fs_read_link" => Some(ObjectType::Symlink),
        _ => None,
    }
}

/// A Qumulo attribute `type` value (`FS_FILE_TYPE_DIRECTORY`, ...) as an object type.
fn type_from_attribute(v: &Value) -> Option<ObjectType> {
    match v.as_str()? {
        "FS_FILE_TYPE_FILE" => Some(ObjectType::File),
        "FS_FILE_TYPE_DIRECTORY" => Some(ObjectType::Directory),
        "FS_FILE_TYPE_SYMLINK" => Some(ObjectType::Symlink),
        _ => None,
    }
}

/// What changed between `before` and `after` of an `fs_write_metadata`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MetadataChange {
    pub owner: bool,
    pub protection_added: bool,
    pub protection_removed: bool,
    pub permissions_added: bool,
    pub permissions_removed: bool,
}

fn acl_protected(acl: &Value) -> bool {
    acl.get("control")
        .and_then(Value::as_array)
        .is_some_and(|c| c.iter().any(|f| f.as_str() == Some("PROTECTED")))
}

fn acl_aces(acl: &Value) -> Vec<String> {
    acl.get("aces")
        .and_then(Value::as_array)
        .map(|aces| aces.iter().map(|a| a.to_string()).collect())
        .unwrap_or_default()
}

fn parse_mode(v: &Value) -> Option<u32> {
    match v {
        Value::String(s) => u32::from_str_radix(s.trim_start_matches("0o"), 8).ok(),
        Value::Number(n) => n.as_u64().map(|n| n as u32),
        _ => None,
    }
}

/// Compares the `before` and `after` attribute objects of an `fs_write_metadata` event.
pub fn compare_metadata(before: &Value, after: &Value) -> MetadataChange {
    let mut ch = MetadataChange::default();
    if let (Some(b), Some(a)) = (before.get("owner"), after.get("owner")) {
        ch.owner = b != a;
    }
    if let (Some(b), Some(a)) = (before.get("acl"), after.get("acl")) {
        let (pb, pa) = (acl_protected(b), acl_protected(a));
        ch.protection_added = !pb && pa;
        ch.protection_removed = pb && !pa;
        let (eb, ea) = (acl_aces(b), acl_aces(a));
        let added = ea.iter().filter(|e| !eb.contains(e)).count();
        let removed = eb.iter().filter(|e| !ea.contains(e)).count();
        if added > 0 && removed > 0 {
            // A rewritten entry: more entries than before is a grant, fewer a revocation,
            // the same count a changed grant (reported as added).
            if ea.len() < eb.len() {
                ch.permissions_removed = true;
            } else {
                ch.permissions_added = true;
            }
        } else {
            ch.permissions_added = added > 0;
            ch.permissions_removed = removed > 0;
        }
    }
    if let (Some(b), Some(a)) = (before.get("mode").and_then(parse_mode), after.get("mode").and_then(parse_mode)) {
        let bits = 0o7777;
        if (a & !b) & bits != 0 {
            ch.permissions_added = true;
        } else if (b & !a) & bits != 0 {
            ch.permissions_removed = true;
        }
    }
    ch
}

impl MetadataChange {
    /// The one action reported, by precedence: owner, protection, permissions.
    pub fn action(&self) -> Option<Action> {
        if self.owner {
            Some(Action::ChangeOwner)
        } else if self.protection_added {
            Some(Action::AddProtection)
        } else if self.protection_removed {
            Some(Action::RemoveProtection)
        } else if self.permissions_added {
            Some(Action::AddPermissions)
        } else if self.permissions_removed {
            Some(Action::RemovePermissions)
        } else {
            None
        }
    }
}

/// Sets `ev.action` and `ev.object_type`, learning and using the id -> type map.
pub struct Classifier {
    pub types: TypeCache,
}

impl Default for Classifier {
    fn default() -> Self {
        Classifier::new(DEFAULT_TYPE_CACHE_ENTRIES)
    }
}

impl Classifier {
    pub fn new(type_cache_entries: usize) -> Classifier {
        Classifier { types: TypeCache::new(type_cache_entries) }
    }

    pub fn classify(&mut self, ev: &mut Event) {
        ev.action = action_for_operation(&ev.operation);
        // File ids are unique within a cluster only: key the memory by both.
        let id: Option<u64> =
            ev.file_id.parse::<u64>().ok().map(|id| xxhash_rust::xxh3::xxh3_64_with_seed(ev.cluster.as_bytes(), id));
        let mut ty = type_implied_by_operation(&ev.operation);

        let needs_details = ev.operation == "fs_write_metadata" || ty.is_none();
        if needs_details && (ev.details.contains("\"before\"") || ev.details.contains("\"type\"")) {
            if let Ok(details) = serde_json::from_str::<Value>(&ev.details) {
                let before = details.get("before");
                let after = details.get("after");
                if ty.is_none() {
                    ty = [after, before, Some(&details)]
                        .into_iter()
                        .flatten()
                        .find_map(|v| v.get("type").and_then(type_from_attribute));
                }
                if ev.operation == "fs_write_metadata" {
                    if let (Some(b), Some(a)) = (before, after) {
                        if let Some(action) = compare_metadata(b, a).action() {
                            ev.action = action;
                        }
                    }
                }
            }
        }
        // A path written with a trailing slash is a directory (Qumulo writes some that way).
        if ty.is_none() && ev.path.len() > 1 && ev.path.ends_with('/') {
            ty = Some(ObjectType::Directory);
        }

        match (id, ty) {
            (Some(id), Some(t)) if ev.is_success() => self.types.insert(id, t),
            (Some(id), None) => ty = self.types.get(id),
            _ => {}
        }
        ev.object_type = ty.unwrap_or(ObjectType::Unknown);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(op: &str, id: &str, details: &str) -> Event {
        Event {
            operation: op.into(),
            status: "ok".into(),
            file_id: id.into(),
            details: details.into(),
            ..Event::default()
        }
    }

    #[test]
    fn operation_names() {
        let cases = [
            ("fs_create_file", Action::Create),
            ("fs_create_directory", Action::Create),
            ("fs_create_symlink", Action::Create),
            ("fs_create_hard_link", Action::Link),
            ("fs_read_data", Action::Read),
            ("fs_write_data", Action::Write),
            ("fs_copy_chunk", Action::Write),
            ("fs_delete", Action::Delete),
            ("fs_tree_delete", Action::Delete),
            ("fs_rename", Action::Rename),
            ("fs_read_metadata", Action::ReadMetadata),
            ("fs_write_metadata", Action::WriteMetadata),
            ("fs_write_user_metadata", Action::WriteMetadata),
            ("fs_list_directory", Action::List),
            ("fs_open", Action::Open),
            ("smb_login", Action::Login),
            ("rest_login", Action::Login),
            ("nfs_mount", Action::Login),
            ("smb_create_share", Action::Admin),
            ("audit_modify_syslog_config", Action::Admin),
            ("begin_audit_modify_syslog_config", Action::Admin),
            ("remote_syslog_startup", Action::Admin),
            ("fs_modify_permissions_settings", Action::Admin),
            ("smb_close_handle", Action::Other),
            ("fs_something_new", Action::Other),
            ("Weird Op", Action::Other),
        ];
        for (op, action) in cases {
            assert_eq!(action_for_operation(op), action, "{op}");
        }
    }

    #[test]
    fn learned_types_classify_later_deletes() {
        let mut c = Classifier::new(100);
        let mut e = ev("fs_create_directory", "7", "");
        c.classify(&mut e);
        assert_eq!(e.object_type, ObjectType::Directory);
        let mut e = ev("fs_read_data", "8", "");
        c.classify(&mut e);
        assert_eq!(e.object_type, ObjectType::File);
        let mut e = ev("fs_create_symlink", "9", "");
        c.classify(&mut e);
        let mut d = ev("fs_delete", "7", "");
        c.classify(&mut d);
        assert_eq!((d.action, d.object_type), (Action::Delete, ObjectType::Directory));
        let mut r = ev("fs_rename", "8", "");
        c.classify(&mut r);
        assert_eq!(r.object_type, ObjectType::File);
        let mut s = ev("fs_delete", "9", "");
        c.classify(&mut s);
        assert_eq!(s.object_type, ObjectType::Symlink);
        let mut u = ev("fs_delete", "10", "");
        c.classify(&mut u);
        assert_eq!(u.object_type, ObjectType::Unknown);
    }

    #[test]
    fn file_ids_are_per_cluster() {
        let mut c = Classifier::new(100);
        let mut e = ev("fs_create_directory", "7", "");
        e.cluster = "alpha".into();
        c.classify(&mut e);
        let mut d = ev("fs_delete", "7", "");
        d.cluster = "beta".into();
        c.classify(&mut d);
        assert_eq!(d.object_type, ObjectType::Unknown);
        d.cluster = "alpha".into();
        c.classify(&mut d);
        assert_eq!(d.object_type, ObjectType::Directory);
    }

    #[test]
    fn failed_operations_teach_nothing() {
        let mut c = Classifier::new(100);
        let mut e = ev("fs_create_directory", "7", "");
        e.status = "fs_access_denied_error".into();
        c.classify(&mut e);
        assert_eq!(e.object_type, ObjectType::Directory);
        let mut d = ev("fs_delete", "7", "");
        c.classify(&mut d);
        assert_eq!(d.object_type, ObjectType::Unknown);
    }

    #[test]
    fn type_cache_is_bounded_and_keeps_recent_ids() {
        let mut t = TypeCache::new(1000);
        for i in 0..10_000u64 {
            t.insert(i, ObjectType::File);
        }
        assert!(t.len() <= 1000);
        assert_eq!(t.get(9_999), Some(ObjectType::File));
        assert_eq!(t.get(1), None);
        // An old-generation hit is promoted and survives the next rotation.
        let mut t = TypeCache::new(4);
        t.insert(1, ObjectType::Directory);
        t.insert(2, ObjectType::File);
        t.insert(3, ObjectType::File); // rotates: old = {1,2}
        assert_eq!(t.get(1), Some(ObjectType::Directory));
        t.insert(4, ObjectType::File);
        t.insert(5, ObjectType::File);
        assert_eq!(t.get(1), Some(ObjectType::Directory));
    }

    fn meta(before: Value, after: Value) -> Action {
        let details = json!({"before": before, "after": after}).to_string();
        let mut e = ev("fs_write_metadata", "4", &details);
        Classifier::new(10).classify(&mut e);
        e.action
    }

    fn ace(trustee: &str, rights: &[&str]) -> Value {
        json!({"type": "ALLOWED", "flags": ["OBJECT_INHERIT"], "trustee": {"sid": trustee}, "rights": rights})
    }

    #[test]
    fn metadata_rules() {
        let owner = |sid: &str| json!({"owner": {"sid": sid, "auth_id": "1"}, "mtime": "x"});
        assert_eq!(meta(owner("S-1"), owner("S-2")), Action::ChangeOwner);
        assert_eq!(meta(owner("S-1"), owner("S-1")), Action::WriteMetadata);

        let acl = |control: &[&str], aces: Vec<Value>| json!({"acl": {"control": control, "aces": aces}});
        let a = ace("S-1", &["READ"]);
        let b = ace("S-2", &["READ", "WRITE"]);
        assert_eq!(meta(acl(&["PRESENT"], vec![a.clone()]), acl(&["PRESENT"], vec![a.clone(), b.clone()])), Action::AddPermissions);
        assert_eq!(meta(acl(&["PRESENT"], vec![a.clone(), b.clone()]), acl(&["PRESENT"], vec![a.clone()])), Action::RemovePermissions);
        assert_eq!(meta(acl(&["PRESENT"], vec![a.clone()]), acl(&["PRESENT", "PROTECTED"], vec![a.clone()])), Action::AddProtection);
        assert_eq!(meta(acl(&["PRESENT", "PROTECTED"], vec![a.clone()]), acl(&["PRESENT"], vec![a.clone()])), Action::RemoveProtection);
        // Same number of entries, one rewritten: a changed grant.
        assert_eq!(meta(acl(&["PRESENT"], vec![a.clone()]), acl(&["PRESENT"], vec![b.clone()])), Action::AddPermissions);
        assert_eq!(meta(acl(&["PRESENT"], vec![a.clone(), b.clone()]), acl(&["PRESENT"], vec![ace("S-3", &["READ"])])), Action::RemovePermissions);

        assert_eq!(meta(json!({"mode": "0644"}), json!({"mode": "0664"})), Action::AddPermissions);
        assert_eq!(meta(json!({"mode": "0664"}), json!({"mode": "0644"})), Action::RemovePermissions);
        // Owner wins over a simultaneous ACL change.
        let mut both_b = owner("S-1");
        both_b["acl"] = json!({"control": [], "aces": [a.clone()]});
        let mut both_a = owner("S-2");
        both_a["acl"] = json!({"control": [], "aces": []});
        assert_eq!(meta(both_b, both_a), Action::ChangeOwner);
    }

    #[test]
    fn attribute_type_in_details() {
        let mut c = Classifier::new(10);
        let d = json!({"before": {"type": "FS_FILE_TYPE_DIRECTORY", "mode": "0755"}, "after": {"type": "FS_FILE_TYPE_DIRECTORY", "mode": "0700"}}).to_string();
        let mut e = ev("fs_write_metadata", "11", &d);
        c.classify(&mut e);
        assert_eq!((e.action, e.object_type), (Action::RemovePermissions, ObjectType::Directory));
        let mut del = ev("fs_delete", "11", "");
        c.classify(&mut del);
        assert_eq!(del.object_type, ObjectType::Directory);
    }
}
