//! The one event model every input format is normalised into.
//!
//! An [`Event`] is filled in place by the parser (see [`crate::input`]) and read by the
//! classifier and every output format. Its string fields are owned `String`s that are cleared
//! and refilled for each line, so a long-running parser allocates only while the buffers grow:
//! an empty string means "not present in the input" (never an invented value), and renderers
//! omit such fields. The canonical JSON rendering lives in [`crate::format::json`] and is
//! documented in `docs/event-schema.md`.

use crate::time::Timestamp;

/// The Qumulo audit format a line was written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SourceFormat {
    /// Syslog CSV (Qumulo's default).
    #[default]
    Csv,
    /// Syslog JSON (Qumulo Core 6.0.1 and later).
    Json,
    /// Amazon CloudWatch JSON.
    CloudWatch,
}

impl SourceFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceFormat::Csv => "csv",
            SourceFormat::Json => "json",
            SourceFormat::CloudWatch => "cloudwatch",
        }
    }
}

/// What kind of file-system object the operation touched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ObjectType {
    File,
    Directory,
    Symlink,
    #[default]
    Unknown,
}

impl ObjectType {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectType::File => "file",
            ObjectType::Directory => "directory",
            ObjectType::Symlink => "symlink",
            ObjectType::Unknown => "unknown",
        }
    }
}

/// The security category of an operation (see `docs/classification.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Action {
    Create,
    Read,
    Write,
    Delete,
    Rename,
    ChangeOwner,
    AddPermissions,
    RemovePermissions,
    AddProtection,
    RemoveProtection,
    ReadMetadata,
    WriteMetadata,
    List,
    Open,
    Link,
    Login,
    Admin,
    #[default]
    Other,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Read => "read",
            Action::Write => "write",
            Action::Delete => "delete",
            Action::Rename => "rename",
            Action::ChangeOwner => "change_owner",
            Action::AddPermissions => "add_permissions",
            Action::RemovePermissions => "remove_permissions",
            Action::AddProtection => "add_protection",
            Action::RemoveProtection => "remove_protection",
            Action::ReadMetadata => "read_metadata",
            Action::WriteMetadata => "write_metadata",
            Action::List => "list",
            Action::Open => "open",
            Action::Link => "link",
            Action::Login => "login",
            Action::Admin => "admin",
            Action::Other => "other",
        }
    }

    /// Every action, in documentation order.
    pub const ALL: [Action; 18] = [
        Action::Create,
        Action::Read,
        Action::Write,
        Action::Delete,
        Action::Rename,
        Action::ChangeOwner,
        Action::AddPermissions,
        Action::RemovePermissions,
        Action::AddProtection,
        Action::RemoveProtection,
        Action::ReadMetadata,
        Action::WriteMetadata,
        Action::List,
        Action::Open,
        Action::Link,
        Action::Login,
        Action::Admin,
        Action::Other,
    ];
}

/// Who performed the operation. Any of the three may be empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct User {
    /// The name as Qumulo wrote it, e.g. `AD\alice` or `system`.
    pub name: String,
    /// Windows SID (syslog JSON only).
    pub sid: String,
    /// Qumulo auth id (syslog JSON only).
    pub auth_id: String,
}

/// One normalised audit event.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Event {
    /// Stable event id (see `docs/event-schema.md`): the envelope's `uuid` when there is one
    /// (versions 3 and 1, rsyslog's `%uuid%`), otherwise a hash of the cluster name and the input
    /// line (a version 2 envelope line is unique per received message).
    pub id: String,
    /// When the operation happened, if the line carried a time.
    pub time: Option<Timestamp>,
    /// The Qumulo cluster's name (from the envelope, `--cluster`, or the config).
    pub cluster: String,
    /// The node that sent the line (syslog hostname, or the CSV node column).
    pub node: String,
    /// The IP the syslog message came from (rsyslog's `fromhost-ip`, envelope only).
    pub fromhost_ip: String,
    /// The client's IP address.
    pub client_ip: String,
    pub user: User,
    /// `smb2`, `nfs3`, `api`, `internal`, ... as Qumulo wrote it.
    pub protocol: String,
    /// Qumulo's operation name, unchanged.
    pub operation: String,
    /// Qumulo's status name, unchanged (`ok` or an error name).
    pub status: String,
    pub action: Action,
    pub object_type: ObjectType,
    pub file_id: String,
    pub path: String,
    pub target_path: String,
    /// Compact JSON object text with what the input carried beyond the fields above, or empty.
    pub details: String,
    /// Set only by the JSON parser, right after it built `details`, when it vouches that they
    /// are what `format::details` writes unchanged (one compact object, no duplicate key at any
    /// depth, no backslash at all): renderers then copy them without scanning them again. Code
    /// that changes `details` afterwards must clear it.
    pub details_vouched: bool,
    pub source_format: SourceFormat,
}

impl Event {
    /// Empties every field, keeping the allocated buffers for reuse.
    pub fn clear(&mut self) {
        self.id.clear();
        self.time = None;
        self.cluster.clear();
        self.node.clear();
        self.fromhost_ip.clear();
        self.client_ip.clear();
        self.user.name.clear();
        self.user.sid.clear();
        self.user.auth_id.clear();
        self.protocol.clear();
        self.operation.clear();
        self.status.clear();
        self.action = Action::Other;
        self.object_type = ObjectType::Unknown;
        self.file_id.clear();
        self.path.clear();
        self.target_path.clear();
        self.details.clear();
        self.details_vouched = false;
        self.source_format = SourceFormat::Csv;
    }

    /// `success` when Qumulo reported `ok`, otherwise `failure`.
    pub fn outcome(&self) -> &'static str {
        if self.status == "ok" {
            "success"
        } else {
            "failure"
        }
    }

    pub fn is_success(&self) -> bool {
        self.status == "ok"
    }

    /// The user's domain and bare name, split at the first backslash (`AD\alice` -> (`AD`, `alice`)).
    pub fn user_domain_and_name(&self) -> (Option<&str>, &str) {
        match self.user.name.split_once('\\') {
            Some((domain, name)) if !domain.is_empty() => (Some(domain), name),
            _ => (None, self.user.name.as_str()),
        }
    }
}

/// Splits a path into (directory, name): `/a/b/c.txt` -> (`/a/b`, `c.txt`), `/c` -> (`/`, `c`).
/// A trailing slash (Qumulo writes directories as `/dir/`) is ignored for the split.
pub fn split_path(path: &str) -> (&str, &str) {
    let trimmed = if path.len() > 1 { path.trim_end_matches('/') } else { path };
    match trimmed.rfind('/') {
        Some(0) => ("/", &trimmed[1..]),
        Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
        None => ("", trimmed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_path_cases() {
        assert_eq!(split_path("/a/b/c.txt"), ("/a/b", "c.txt"));
        assert_eq!(split_path("/c"), ("/", "c"));
        assert_eq!(split_path("/dir/"), ("/", "dir"));
        assert_eq!(split_path("/"), ("/", ""));
        assert_eq!(split_path("name"), ("", "name"));
        assert_eq!(split_path("/.snapshot/1_hourly/x/y"), ("/.snapshot/1_hourly/x", "y"));
    }

    #[test]
    fn user_domain_split() {
        let mut ev = Event::default();
        ev.user.name = "AD\\alice".into();
        assert_eq!(ev.user_domain_and_name(), (Some("AD"), "alice"));
        ev.user.name = "system".into();
        assert_eq!(ev.user_domain_and_name(), (None, "system"));
        ev.user.name = "\\odd".into();
        assert_eq!(ev.user_domain_and_name(), (None, "\\odd"));
    }

    #[test]
    fn outcome_follows_status() {
        let mut ev = Event { status: "ok".into(), ..Event::default() };
        assert_eq!(ev.outcome(), "success");
        ev.status = "fs_access_denied_error".into();
        assert_eq!(ev.outcome(), "failure");
        ev.clear();
        assert_eq!(ev, Event::default());
    }
}
