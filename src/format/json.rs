//! Canonical JSON: the project's own event rendering, one object per event, field names and
//! order as documented in `docs/event-schema.md` (tests and users rely on them). `details` is
//! written by [`super::details`], which guarantees one object without duplicate keys.

use super::jsonw::JsonObj;
use crate::event::Event;

pub fn render(ev: &Event, out: &mut Vec<u8>) {
    let mut o = JsonObj::begin(out);
    o.str("id", &ev.id);
    match &ev.time {
        Some(t) => o.time("time", t),
        None => o.null("time"),
    };
    o.opt_str("cluster", &ev.cluster);
    o.opt_str("node", &ev.node);
    o.opt_str("fromhost_ip", &ev.fromhost_ip);
    o.opt_str("client_ip", &ev.client_ip);
    {
        let mut u = o.obj("user");
        u.opt_str("name", &ev.user.name).opt_str("sid", &ev.user.sid).opt_str("auth_id", &ev.user.auth_id);
        u.end();
    }
    o.str("protocol", &ev.protocol)
        .str("operation", &ev.operation)
        .str("status", &ev.status)
        .str("outcome", ev.outcome())
        .str("action", ev.action.as_str())
        .str("object_type", ev.object_type.as_str())
        .opt_str("file_id", &ev.file_id)
        .opt_str("path", &ev.path)
        .opt_str("target_path", &ev.target_path);
    if !ev.details.is_empty() {
        super::details::write_details(o.raw_key("details"), ev);
    }
    o.str("source_format", ev.source_format.as_str());
    o.end();
}
