//! `[filter]`: which events a destination receives. Everything passes unless told otherwise
//! (Qumulo's own broker forwarded only SMB; we forward all protocols by default).
//! Includes are checked first (an empty list includes everything), then excludes.

use crate::config::FilterConfig;
use crate::event::Event;

pub struct Filter {
    cfg: FilterConfig,
    active: bool,
}

impl Filter {
    pub fn new(cfg: FilterConfig) -> Filter {
        let active = !(cfg.include_protocols.is_empty()
            && cfg.exclude_protocols.is_empty()
            && cfg.include_operations.is_empty()
            && cfg.exclude_operations.is_empty()
            && cfg.include_path_prefixes.is_empty()
            && cfg.exclude_path_prefixes.is_empty());
        Filter { cfg, active }
    }

    pub fn passes(&self, ev: &Event) -> bool {
        if !self.active {
            return true;
        }
        let c = &self.cfg;
        let listed = |list: &[String], v: &str| list.iter().any(|x| x == v);
        let prefixed = |list: &[String]| {
            list.iter().any(|p| ev.path.starts_with(p.as_str()) || (!ev.target_path.is_empty() && ev.target_path.starts_with(p.as_str())))
        };
        if !c.include_protocols.is_empty() && !listed(&c.include_protocols, &ev.protocol) {
            return false;
        }
        if !c.include_operations.is_empty() && !listed(&c.include_operations, &ev.operation) {
            return false;
        }
        if !c.include_path_prefixes.is_empty() && !prefixed(&c.include_path_prefixes) {
            return false;
        }
        !(listed(&c.exclude_protocols, &ev.protocol)
            || listed(&c.exclude_operations, &ev.operation)
            || prefixed(&c.exclude_path_prefixes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(proto: &str, op: &str, path: &str) -> Event {
        Event { protocol: proto.into(), operation: op.into(), path: path.into(), ..Event::default() }
    }

    #[test]
    fn default_passes_everything() {
        assert!(Filter::new(FilterConfig::default()).passes(&ev("nfs3", "fs_read_data", "/x")));
    }

    #[test]
    fn includes_then_excludes() {
        let f = Filter::new(FilterConfig {
            include_protocols: vec!["smb2".into()],
            exclude_operations: vec!["fs_read_metadata".into()],
            exclude_path_prefixes: vec!["/tmp/".into()],
            ..FilterConfig::default()
        });
        assert!(f.passes(&ev("smb2", "fs_write_data", "/share/a")));
        assert!(!f.passes(&ev("nfs3", "fs_write_data", "/share/a")));
        assert!(!f.passes(&ev("smb2", "fs_read_metadata", "/share/a")));
        assert!(!f.passes(&ev("smb2", "fs_write_data", "/tmp/a")));
        let g = Filter::new(FilterConfig { include_path_prefixes: vec!["/finance/".into()], ..FilterConfig::default() });
        assert!(g.passes(&ev("smb2", "fs_rename", "/finance/a")));
        assert!(!g.passes(&ev("smb2", "fs_rename", "/hr/a")));
    }
}
