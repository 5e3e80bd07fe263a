//! OCSF: one Open Cybersecurity Schema Framework 1.1.0 event per Qumulo event, always of class
//! File System Activity (`class_uid` 1001, category System Activity, `category_uid` 1), written
//! with the shared allocation-free [`JsonObj`] writer. This module owns the OCSF mapping
//! (documented in `docs/formats.md`).
//!
//! Choices the schema leaves to the producer:
//!
//! * `activity_id` from our action: create and link 1 Create (a hard link creates a name),
//!   read and list 2 Read (listing reads a folder), write 3 Update, delete 4, rename 5,
//!   write_metadata 6 Set Attributes, owner/permission/protection changes 7 Set Security,
//!   read_metadata 8 Get Attributes, open 14 Open; login, admin and other are 99 Other with the
//!   Qumulo operation as `activity_name` (OCSF's rule for Other). Every other activity carries
//!   its OCSF caption as `activity_name`. `type_uid` = `class_uid` * 100 + `activity_id`.
//! * `severity_id`: 1 Informational on success, 3 Medium when the operation was refused
//!   (access and credential errors), 2 Low for any other failure ([`super::Severity`]).
//! * `status_id` 1 Success / 2 Failure; Qumulo's status name is both `status_code` (the code as
//!   reported by the source) and `status_detail`.
//! * File System Activity 1.1.0 defines no `src_endpoint`, so the client address goes to
//!   `unmapped.client_ip` and, when it is an IP address, to `observables` (type 2, IP Address).
//! * `file_result` (the resulting file) is written for successful renames only, as the schema
//!   describes it; a failed rename keeps its target in `unmapped.target_path`.
//! * `device` is the Qumulo node (`type_id` 1 Server, `hostname`, `ip` from the syslog sender).
//! * `time` (epoch milliseconds) and other absent fields are omitted when the input had none.

use super::jsonw::JsonObj;
use super::{is_ip, Severity, PRODUCT, VENDOR};
use crate::event::{split_path, Action, Event, ObjectType};

/// The OCSF schema version the events follow.
pub const OCSF_VERSION: &str = "1.1.0";
pub const CLASS_UID: i64 = 1001;
pub const CATEGORY_UID: i64 = 1;

/// OCSF `activity_id` and its caption for an action (99 Other for non-file-system actions).
pub fn activity(action: Action) -> (i64, &'static str) {
    match action {
        Action::Create | Action::Link => (1, "Create"),
        Action::Read | Action::List => (2, "Read"),
        Action::Write => (3, "Update"),
        Action::Delete => (4, "Delete"),
        Action::Rename => (5, "Rename"),
        Action::WriteMetadata => (6, "Set Attributes"),
        Action::ChangeOwner
        | Action::AddPermissions
        | Action::RemovePermissions
        | Action::AddProtection
        | Action::RemoveProtection => (7, "Set Security"),
        Action::ReadMetadata => (8, "Get Attributes"),
        Action::Open => (14, "Open"),
        Action::Login | Action::Admin | Action::Other => (99, "Other"),
    }
}

/// OCSF file `type_id` and caption.
pub fn file_type(t: ObjectType) -> (i64, &'static str) {
    match t {
        ObjectType::File => (1, "Regular File"),
        ObjectType::Directory => (2, "Folder"),
        ObjectType::Symlink => (7, "Symbolic Link"),
        ObjectType::Unknown => (0, "Unknown"),
    }
}

/// Writes an OCSF `file` object for `path` (name, parent_folder, path) and the event's type/id.
fn write_file(o: &mut JsonObj<'_>, key: &str, path: &str, ev: &Event, with_uid: bool) {
    let mut f = o.obj(key);
    let (dir, name) = split_path(path);
    // `name` is required; the root folder's name is its path.
    f.str("name", if name.is_empty() { path } else { name });
    if !name.is_empty() {
        f.opt_str("parent_folder", dir);
    }
    f.opt_str("path", path);
    let (type_id, type_name) = file_type(ev.object_type);
    f.int("type_id", type_id).str("type", type_name);
    if with_uid {
        f.opt_str("uid", &ev.file_id);
    }
    f.end();
}

pub fn render(ev: &Event, out: &mut Vec<u8>) {
    let (activity_id, caption) = activity(ev.action);
    let activity_name = if activity_id == 99 && !ev.operation.is_empty() { ev.operation.as_str() } else { caption };
    let (severity_id, severity) = Severity::of(ev).ocsf();
    let success = ev.is_success();
    let mut o = JsonObj::begin(out);
    o.int("activity_id", activity_id)
        .str("activity_name", activity_name)
        .int("category_uid", CATEGORY_UID)
        .str("category_name", "System Activity")
        .int("class_uid", CLASS_UID)
        .str("class_name", "File System Activity")
        .int("type_uid", CLASS_UID * 100 + activity_id)
        .str_parts("type_name", &["File System Activity: ", caption])
        .int("severity_id", severity_id as i64)
        .str("severity", severity)
        .int("status_id", if success { 1 } else { 2 })
        .str("status", if success { "Success" } else { "Failure" })
        .opt_str("status_code", &ev.status)
        .opt_str("status_detail", &ev.status);
    if let Some(t) = &ev.time {
        o.int("time", t.epoch_millis());
    }
    {
        let mut m = o.obj("metadata");
        m.str("version", OCSF_VERSION);
        {
            let mut p = m.obj("product");
            p.str("name", PRODUCT).str("vendor_name", VENDOR);
            p.end();
        }
        m.opt_str("uid", &ev.id).opt_str("event_code", &ev.operation);
        m.end();
    }
    let (domain, name) = ev.user_domain_and_name();
    let uid = if ev.user.sid.is_empty() { &ev.user.auth_id } else { &ev.user.sid };
    if !name.is_empty() || !uid.is_empty() {
        let mut a = o.obj("actor");
        {
            let mut u = a.obj("user");
            u.opt_str("name", name).opt_str("uid", uid).opt_str("domain", domain.unwrap_or(""));
            u.end();
        }
        a.end();
    }
    {
        let mut d = o.obj("device");
        d.int("type_id", 1).str("type", "Server").opt_str("hostname", &ev.node);
        if is_ip(&ev.fromhost_ip) {
            d.str("ip", &ev.fromhost_ip);
        }
        d.end();
    }
    if !ev.path.is_empty() || !ev.file_id.is_empty() {
        write_file(&mut o, "file", &ev.path, ev, true);
    }
    let rename_result = ev.action == Action::Rename && success && !ev.target_path.is_empty();
    if rename_result {
        write_file(&mut o, "file_result", &ev.target_path, ev, true);
    }
    if is_ip(&ev.client_ip) {
        let mut arr = o.arr("observables");
        let mut ob = arr.obj();
        ob.str("name", "unmapped.client_ip").int("type_id", 2).str("type", "IP Address").str("value", &ev.client_ip);
        ob.end();
        arr.end();
    }
    {
        let mut u = o.obj("unmapped");
        u.opt_str("client_ip", &ev.client_ip)
            .opt_str("cluster", &ev.cluster)
            .str("operation", &ev.operation)
            .opt_str("protocol", &ev.protocol);
        if !rename_result {
            u.opt_str("target_path", &ev.target_path);
        }
        if !ev.user.sid.is_empty() {
            u.opt_str("auth_id", &ev.user.auth_id);
        }
        if !is_ip(&ev.fromhost_ip) {
            u.opt_str("fromhost_ip", &ev.fromhost_ip);
        }
        if !ev.details.is_empty() {
            super::details::write_details(u.raw_key("details"), ev);
        }
        u.end();
    }
    o.end();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::User;
    use crate::time::Timestamp;
    use serde_json::Value;

    fn sample() -> Event {
        Event {
            id: "abc".into(),
            time: Some(Timestamp::from_epoch_millis(1_717_679_645_123)),
            cluster: "c1".into(),
            node: "q-1".into(),
            fromhost_ip: "10.0.0.5".into(),
            client_ip: "203.0.113.0".into(),
            user: User { name: "AD\\alice".into(), sid: "S-1-5-21-1".into(), auth_id: "500".into() },
            protocol: "smb2".into(),
            operation: "fs_rename".into(),
            status: "ok".into(),
            action: Action::Rename,
            object_type: ObjectType::File,
            file_id: "3".into(),
            path: "/a/b.txt".into(),
            target_path: "/c/d.txt".into(),
            details: r#"{"x":[1]}"#.into(),
            ..Event::default()
        }
    }

    fn render_value(ev: &Event) -> Value {
        let mut out = Vec::new();
        render(ev, &mut out);
        serde_json::from_slice(&out).expect("OCSF output is JSON")
    }

    #[test]
    fn required_fields_and_mapping() {
        let v = render_value(&sample());
        for key in ["activity_id", "category_uid", "class_uid", "type_uid", "severity_id", "time", "metadata", "actor", "device", "file"] {
            assert!(v.get(key).is_some(), "{key} missing");
        }
        assert_eq!(v["class_uid"], 1001);
        assert_eq!(v["category_uid"], 1);
        assert_eq!(v["activity_id"], 5);
        assert_eq!(v["activity_name"], "Rename");
        assert_eq!(v["type_uid"], 100105);
        assert_eq!(v["type_name"], "File System Activity: Rename");
        assert_eq!(v["severity_id"], 1);
        assert_eq!(v["status_id"], 1);
        assert_eq!(v["time"], 1_717_679_645_123_i64);
        assert_eq!(v["metadata"]["version"], "1.1.0");
        assert_eq!(v["metadata"]["product"]["vendor_name"], "Qumulo");
        assert_eq!(v["metadata"]["uid"], "abc");
        assert_eq!(v["actor"]["user"]["name"], "alice");
        assert_eq!(v["actor"]["user"]["domain"], "AD");
        assert_eq!(v["actor"]["user"]["uid"], "S-1-5-21-1");
        assert_eq!(v["device"]["hostname"], "q-1");
        assert_eq!(v["device"]["type_id"], 1);
        assert_eq!(v["file"]["name"], "b.txt");
        assert_eq!(v["file"]["parent_folder"], "/a");
        assert_eq!(v["file"]["type_id"], 1);
        assert_eq!(v["file"]["uid"], "3");
        assert_eq!(v["file_result"]["path"], "/c/d.txt");
        assert_eq!(v["file_result"]["name"], "d.txt");
        assert_eq!(v["observables"][0]["value"], "203.0.113.0");
        assert_eq!(v["unmapped"]["details"]["x"][0], 1);
        assert_eq!(v["unmapped"]["auth_id"], "500");
        assert!(v["unmapped"].get("target_path").is_none());
    }

    #[test]
    fn failures_other_activities_and_types() {
        let mut ev = sample();
        ev.status = "fs_access_denied_error".into();
        let v = render_value(&ev);
        assert_eq!((v["status_id"].as_i64(), v["severity_id"].as_i64()), (Some(2), Some(3)));
        assert_eq!(v["status"], "Failure");
        assert_eq!(v["status_detail"], "fs_access_denied_error");
        assert!(v.get("file_result").is_none());
        assert_eq!(v["unmapped"]["target_path"], "/c/d.txt");

        ev.status = "fs_entry_exists_error".into();
        assert_eq!(render_value(&ev)["severity_id"], 2);

        let login = Event { operation: "smb_login".into(), status: "ok".into(), action: Action::Login, ..Event::default() };
        let v = render_value(&login);
        assert_eq!((v["activity_id"].as_i64(), v["type_uid"].as_i64()), (Some(99), Some(100199)));
        assert_eq!(v["activity_name"], "smb_login");
        assert_eq!(v["type_name"], "File System Activity: Other");
        assert!(v.get("time").is_none() && v.get("file").is_none() && v.get("actor").is_none());

        assert_eq!(file_type(ObjectType::Symlink), (7, "Symbolic Link"));
        assert_eq!(file_type(ObjectType::Directory), (2, "Folder"));
        let root = Event { path: "/".into(), status: "ok".into(), action: Action::List, ..Event::default() };
        let v = render_value(&root);
        assert_eq!(v["file"]["name"], "/");
        assert!(v["file"].get("parent_folder").is_none());
        assert_eq!(v["activity_id"], 2);
    }

    #[test]
    fn activity_table() {
        let expected = [
            (Action::Create, 1), (Action::Read, 2), (Action::Write, 3), (Action::Delete, 4), (Action::Rename, 5),
            (Action::ChangeOwner, 7), (Action::AddPermissions, 7), (Action::RemovePermissions, 7),
            (Action::AddProtection, 7), (Action::RemoveProtection, 7), (Action::ReadMetadata, 8),
            (Action::WriteMetadata, 6), (Action::List, 2), (Action::Open, 14), (Action::Link, 1),
            (Action::Login, 99), (Action::Admin, 99), (Action::Other, 99),
        ];
        assert_eq!(expected.len(), Action::ALL.len());
        for (a, id) in expected {
            assert_eq!(activity(a).0, id, "{a:?}");
        }
    }
}
