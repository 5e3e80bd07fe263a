//! Elastic Common Schema: one ECS 8.x document per event (`ecs.version` 8.11.0), written with
//! the shared allocation-free [`JsonObj`] writer. This module owns the ECS field mapping
//! (documented in `docs/formats.md`); Qumulo fields ECS has no place for live under the custom
//! `qumulo` namespace.
//!
//! Categorisation follows the ECS 8.11 allowed values: `event.kind` is always `event`;
//! `event.category` is `file`, `authentication` (logins), `configuration` (REST/admin
//! operations) or `session` (unmapped operations that name no file); `event.type` uses only the
//! values ECS allows for that category. Absent (empty) fields are omitted, `@timestamp`
//! included when the line carried no time. `source.ip` and `host.ip` are written only when the
//! value is an IP address (Elasticsearch rejects the document otherwise); the raw client
//! address is always in `source.address`.

use super::jsonw::JsonObj;
use super::{category, is_ip, PRODUCT, VENDOR};
use crate::event::{split_path, Action, Event, ObjectType};

/// The ECS version the documents follow.
pub const ECS_VERSION: &str = "8.11.0";

/// The ECS `event.type` for this event (one of the values allowed for [`category`]).
pub fn event_type(ev: &Event) -> &'static str {
    match ev.action {
        Action::Create | Action::Link => "creation",
        Action::Read | Action::List | Action::Open | Action::ReadMetadata => "access",
        Action::Write
        | Action::Rename
        | Action::WriteMetadata
        | Action::ChangeOwner
        | Action::AddPermissions
        | Action::RemovePermissions
        | Action::AddProtection
        | Action::RemoveProtection => "change",
        Action::Delete => "deletion",
        Action::Login => "start",
        Action::Admin => admin_type(&ev.operation),
        Action::Other => {
            if category(ev) == "session" && ev.operation.split('_').any(|w| w == "close") {
                "end"
            } else {
                "info"
            }
        }
    }
}

/// `configuration` event types from the words of a REST operation name.
fn admin_type(op: &str) -> &'static str {
    for word in op.split('_') {
        match word {
            "delete" | "remove" => return "deletion",
            "create" | "add" => return "creation",
            "get" => return "access",
            "startup" | "shutdown" => return "info",
            _ => {}
        }
    }
    "change"
}

fn file_type(t: ObjectType) -> Option<&'static str> {
    match t {
        ObjectType::File => Some("file"),
        ObjectType::Directory => Some("dir"),
        ObjectType::Symlink => Some("symlink"),
        ObjectType::Unknown => None,
    }
}

pub fn render(ev: &Event, out: &mut Vec<u8>) {
    let mut o = JsonObj::begin(out);
    if let Some(t) = &ev.time {
        o.time("@timestamp", t);
    }
    {
        let mut e = o.obj("ecs");
        e.str("version", ECS_VERSION);
        e.end();
    }
    {
        let mut e = o.obj("event");
        e.str("kind", "event")
            .str_array("category", &[category(ev)])
            .str_array("type", &[event_type(ev)])
            .str("action", ev.action.as_str())
            .str("outcome", ev.outcome())
            .opt_str("id", &ev.id);
        e.end();
    }
    if !ev.path.is_empty() || !ev.file_id.is_empty() {
        let mut f = o.obj("file");
        if !ev.path.is_empty() {
            f.str("path", &ev.path);
            let (dir, name) = split_path(&ev.path);
            if !name.is_empty() {
                f.str("name", name).opt_str("directory", dir);
            }
        }
        if let Some(t) = file_type(ev.object_type) {
            f.str("type", t);
        }
        f.opt_str("inode", &ev.file_id);
        f.end();
    }
    let (domain, name) = ev.user_domain_and_name();
    let uid = if ev.user.sid.is_empty() { &ev.user.auth_id } else { &ev.user.sid };
    if !name.is_empty() || !uid.is_empty() {
        let mut u = o.obj("user");
        u.opt_str("name", name).opt_str("domain", domain.unwrap_or("")).opt_str("id", uid);
        u.end();
    }
    if !ev.client_ip.is_empty() {
        let mut s = o.obj("source");
        s.str("address", &ev.client_ip);
        if is_ip(&ev.client_ip) {
            s.str("ip", &ev.client_ip);
        }
        s.end();
    }
    let host_ip = is_ip(&ev.fromhost_ip);
    if !ev.node.is_empty() || host_ip {
        let mut h = o.obj("host");
        h.opt_str("name", &ev.node);
        if host_ip {
            h.str("ip", &ev.fromhost_ip);
        }
        h.end();
    }
    {
        let mut ob = o.obj("observer");
        ob.str("vendor", VENDOR).str("product", PRODUCT);
        ob.end();
    }
    {
        let mut q = o.obj("qumulo");
        q.opt_str("cluster", &ev.cluster)
            .str("operation", &ev.operation)
            .str("status", &ev.status)
            .opt_str("protocol", &ev.protocol)
            .opt_str("file_id", &ev.file_id)
            .opt_str("target_path", &ev.target_path)
            .str("object_type", ev.object_type.as_str())
            .opt_str("auth_id", &ev.user.auth_id);
        if !host_ip {
            q.opt_str("fromhost_ip", &ev.fromhost_ip);
        }
        if !ev.details.is_empty() {
            super::details::write_details(q.raw_key("details"), ev);
        }
        q.end();
    }
    o.end();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;
    use serde_json::Value;

    fn sample() -> Event {
        Event {
            id: "abc".into(),
            time: Some(Timestamp::from_epoch_millis(1_717_679_645_000)),
            cluster: "c1".into(),
            node: "q-1".into(),
            fromhost_ip: "10.0.0.5".into(),
            client_ip: "203.0.113.0".into(),
            user: crate::event::User { name: "AD\\alice".into(), sid: "S-1-5-21-1".into(), auth_id: "500".into() },
            protocol: "smb2".into(),
            operation: "fs_rename".into(),
            status: "ok".into(),
            action: Action::Rename,
            object_type: ObjectType::Directory,
            file_id: "3".into(),
            path: "/a \"q\"/my\\dir/".into(),
            target_path: "/b/new".into(),
            details: r#"{"size":1}"#.into(),
            ..Event::default()
        }
    }

    fn render_value(ev: &Event) -> Value {
        let mut out = Vec::new();
        render(ev, &mut out);
        serde_json::from_slice(&out).expect("ECS output is JSON")
    }

    #[test]
    fn required_fields_and_mapping() {
        let v = render_value(&sample());
        assert_eq!(v["@timestamp"], "2024-06-06T13:14:05.000Z");
        assert_eq!(v["ecs"]["version"], "8.11.0");
        assert_eq!(v["event"]["kind"], "event");
        assert_eq!(v["event"]["category"][0], "file");
        assert_eq!(v["event"]["type"][0], "change");
        assert_eq!(v["event"]["action"], "rename");
        assert_eq!(v["event"]["outcome"], "success");
        assert_eq!(v["event"]["id"], "abc");
        assert_eq!(v["file"]["path"], "/a \"q\"/my\\dir/");
        assert_eq!(v["file"]["name"], "my\\dir");
        assert_eq!(v["file"]["directory"], "/a \"q\"");
        assert_eq!(v["file"]["type"], "dir");
        assert_eq!(v["file"]["inode"], "3");
        assert_eq!(v["user"]["name"], "alice");
        assert_eq!(v["user"]["domain"], "AD");
        assert_eq!(v["user"]["id"], "S-1-5-21-1");
        assert_eq!(v["source"]["ip"], "203.0.113.0");
        assert_eq!(v["host"]["name"], "q-1");
        assert_eq!(v["host"]["ip"], "10.0.0.5");
        assert_eq!(v["observer"]["vendor"], "Qumulo");
        assert_eq!(v["qumulo"]["target_path"], "/b/new");
        assert_eq!(v["qumulo"]["details"]["size"], 1);
        assert!(v["file"].get("target_path").is_none());
    }

    #[test]
    fn absent_fields_are_omitted() {
        let ev = Event { operation: "rest_login".into(), status: "cred_error".into(), action: Action::Login, ..Event::default() };
        let v = render_value(&ev);
        assert!(v.get("@timestamp").is_none());
        assert!(v.get("file").is_none() && v.get("user").is_none() && v.get("source").is_none() && v.get("host").is_none());
        assert_eq!(v["event"]["category"][0], "authentication");
        assert_eq!(v["event"]["type"][0], "start");
        assert_eq!(v["event"]["outcome"], "failure");
        assert!(v["qumulo"].get("details").is_none());
    }

    #[test]
    fn invalid_ips_stay_out_of_ip_fields() {
        let mut ev = sample();
        ev.client_ip = "not-an-ip".into();
        ev.fromhost_ip = "nor this".into();
        let v = render_value(&ev);
        assert_eq!(v["source"]["address"], "not-an-ip");
        assert!(v["source"].get("ip").is_none());
        assert!(v["host"].get("ip").is_none());
        assert_eq!(v["qumulo"]["fromhost_ip"], "nor this");
    }

    #[test]
    fn admin_and_session_types() {
        assert_eq!(admin_type("smb_create_share"), "creation");
        assert_eq!(admin_type("nfs_delete_export"), "deletion");
        assert_eq!(admin_type("auth_get_access_tokens"), "access");
        assert_eq!(admin_type("remote_syslog_startup"), "info");
        assert_eq!(admin_type("audit_modify_syslog_config"), "change");
        let ev = Event { operation: "smb_close_session".into(), action: Action::Other, ..Event::default() };
        assert_eq!((category(&ev), event_type(&ev)), ("session", "end"));
    }
}
