//! The shipped Elasticsearch index template (packaging/elasticsearch/qumulo-audit-ecs-template.json)
//! maps every field the ECS output writes, with the ECS types (date, ip, keyword): every sample
//! audit line under examples/ is rendered by the binary (`convert --to ecs`) and each leaf field
//! of each record is looked up in the template's mappings (`qumulo.details.*` is mapped by the
//! dynamic template as keyword).

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_qumulo-audit-broker");
const TOP: &str = env!("CARGO_MANIFEST_DIR");

fn leaves(prefix: &str, v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                leaves(&if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") }, x, out);
            }
        }
        _ => {
            out.insert(prefix.to_string());
        }
    }
}

/// The mapping type of a dotted field in the template, if mapped.
fn mapped_type<'a>(props: &'a Value, field: &str) -> Option<&'a str> {
    let mut cur = props;
    let parts: Vec<&str> = field.split('.').collect();
    for (i, p) in parts.iter().enumerate() {
        let node = cur.get(*p)?;
        if i == parts.len() - 1 {
            return node.get("type").and_then(Value::as_str);
        }
        if node.get("dynamic") == Some(&Value::Bool(true)) && node.get("properties").is_none() {
            return Some("dynamic");
        }
        cur = node.get("properties")?;
    }
    None
}

#[test]
fn the_template_maps_every_ecs_field_with_its_ecs_type() {
    let t: Value = serde_json::from_str(&std::fs::read_to_string(format!("{TOP}/packaging/elasticsearch/qumulo-audit-ecs-template.json")).unwrap()).unwrap();
    let props = &t["template"]["mappings"]["properties"];
    let examples: Vec<String> = std::fs::read_dir(format!("{TOP}/examples")).unwrap().flatten().map(|e| e.path().display().to_string()).collect();
    let out = Command::new(BIN).args(["convert", "--to", "ecs", "--cluster", "prod"]).args(&examples).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let mut fields = BTreeSet::new();
    for line in text.lines() {
        leaves("", &serde_json::from_str(line).unwrap(), &mut fields);
    }
    assert!(fields.len() > 20 && fields.contains("source.ip") && fields.contains("file.path"), "{fields:?}");
    let unmapped: Vec<&String> = fields.iter().filter(|f| mapped_type(props, f).is_none()).collect();
    assert!(unmapped.is_empty(), "fields the template does not map: {unmapped:?}");
    for (field, ty) in [("@timestamp", "date"), ("source.ip", "ip"), ("host.ip", "ip"), ("event.id", "keyword"), ("file.path", "keyword"), ("qumulo.cluster", "keyword")] {
        assert_eq!(mapped_type(props, field), Some(ty), "{field}");
    }
    assert_eq!(mapped_type(props, "qumulo.details.after.mtime"), Some("dynamic"));
    assert_eq!(t["template"]["mappings"]["dynamic_templates"][0]["strings_as_keyword"]["mapping"]["type"], "keyword");
    assert_eq!(t["index_patterns"][0], "qumulo-audit*", "matches the destination's default index");
}
