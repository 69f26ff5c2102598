//! JSON schemas for kubeconform, made here rather than downloaded (nothing outside is
//! reachable): the built-in kinds from a real apiserver's OpenAPI v2 document, and our kinds
//! from the CRDs' own `openAPIV3Schema`. Each schema is standalone (every `$ref` inlined) and
//! strict (an object with declared properties takes no others), like the
//! `-standalone-strict` schemas kubeconform downloads by default.

use std::path::Path;

use serde_json::{Map, Value, json};

/// The `-schema-location` template for the folder [`write`] fills.
pub fn location(dir: &Path) -> String {
    format!(
        "{}/{{{{ .Group }}}}/{{{{ .ResourceAPIVersion }}}}/{{{{ .ResourceKind }}}}.json",
        dir.display()
    )
}

/// Where kubeconform looks for `apiVersion`/`kind` under [`location`]: the first part of the
/// apiVersion (the group, or `v1` for the core group), the version, the lower-case kind.
fn path(dir: &Path, api_version: &str, kind: &str) -> std::path::PathBuf {
    let mut parts = api_version.split('/');
    let group = parts.next().unwrap_or_default();
    let version = api_version.rsplit('/').next().unwrap_or_default();
    dir.join(group)
        .join(version)
        .join(format!("{}.json", kind.to_lowercase()))
}

/// Writes a schema under `dir` for each kind the OpenAPI v2 document `openapi` declares (by
/// `x-kubernetes-group-version-kind`) and each version of each CRD in `crds`; the number
/// written.
pub fn write(dir: &Path, openapi: &Value, crds: &[Value]) -> std::io::Result<usize> {
    let empty = Map::new();
    let definitions = openapi["definitions"].as_object().unwrap_or(&empty);
    let mut written = 0;
    for (name, definition) in definitions {
        let Some(gvks) = definition["x-kubernetes-group-version-kind"].as_array() else {
            continue;
        };
        let schema = inline(definition, definitions, &mut vec![name.clone()]);
        for gvk in gvks {
            let (group, version) = (
                gvk["group"].as_str().unwrap_or(""),
                gvk["version"].as_str().unwrap_or(""),
            );
            let api_version = if group.is_empty() {
                version.to_owned()
            } else {
                format!("{group}/{version}")
            };
            save(
                &path(dir, &api_version, gvk["kind"].as_str().unwrap_or("")),
                &schema,
            )?;
            written += 1;
        }
    }
    for crd in crds {
        let group = crd["spec"]["group"].as_str().unwrap_or_default();
        let kind = crd["spec"]["names"]["kind"].as_str().unwrap_or_default();
        for version in crd["spec"]["versions"].as_array().into_iter().flatten() {
            let mut schema = strict_v3(&version["schema"]["openAPIV3Schema"]);
            // The CRD's schema leaves out what every object has.
            let properties = schema["properties"].as_object_mut();
            if let Some(properties) = properties {
                properties
                    .entry("apiVersion")
                    .or_insert(json!({"type": "string"}));
                properties
                    .entry("kind")
                    .or_insert(json!({"type": "string"}));
                properties
                    .entry("metadata")
                    .or_insert(json!({"type": "object"}));
            }
            let name = version["name"].as_str().unwrap_or_default();
            save(&path(dir, &format!("{group}/{name}"), kind), &schema)?;
            written += 1;
        }
    }
    Ok(written)
}

fn save(path: &Path, schema: &Value) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(
        path,
        serde_json::to_vec(schema).map_err(std::io::Error::other)?,
    )
}

/// `value` with every `#/definitions/...` reference replaced by its definition (a reference
/// back into one being inlined, as JSONSchemaProps makes, becomes an open schema), strict.
fn inline(value: &Value, definitions: &Map<String, Value>, stack: &mut Vec<String>) -> Value {
    match value {
        Value::Object(map) => {
            if let Some(reference) = map.get("$ref").and_then(Value::as_str) {
                let name = reference.trim_start_matches("#/definitions/").to_owned();
                if stack.contains(&name) {
                    return json!({});
                }
                let Some(definition) = definitions.get(&name) else {
                    return json!({});
                };
                stack.push(name);
                let inlined = inline(definition, definitions, stack);
                stack.pop();
                return inlined;
            }
            if map.get("format").and_then(Value::as_str) == Some("int-or-string") {
                return json!({"oneOf": [{"type": "string"}, {"type": "integer"}]});
            }
            let mut out = Map::new();
            for (key, v) in map {
                // Group-version-kind lists are metadata, not schema.
                if key == "x-kubernetes-group-version-kind" {
                    continue;
                }
                out.insert(key.clone(), inline(v, definitions, stack));
            }
            close(&mut out);
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| inline(v, definitions, stack))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// A CRD's OpenAPI v3 schema, strict, with `x-kubernetes-int-or-string` as JSON Schema says it.
fn strict_v3(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            if map.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
                return json!({"oneOf": [{"type": "string"}, {"type": "integer"}]});
            }
            let mut out: Map<String, Value> =
                map.iter().map(|(k, v)| (k.clone(), strict_v3(v))).collect();
            if out.get("x-kubernetes-preserve-unknown-fields") != Some(&Value::Bool(true)) {
                close(&mut out);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(strict_v3).collect()),
        other => other.clone(),
    }
}

/// An object schema with declared properties and no word on others takes no others.
fn close(schema: &mut Map<String, Value>) {
    if schema.contains_key("properties") && !schema.contains_key("additionalProperties") {
        schema.insert("additionalProperties".into(), Value::Bool(false));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_inlined_cycles_opened_and_objects_closed() {
        let openapi = json!({"definitions": {
            "a.Thing": {
                "x-kubernetes-group-version-kind": [{"group": "apps", "version": "v1", "kind": "Thing"}],
                "properties": {"part": {"$ref": "#/definitions/a.Part"}, "port": {"type": "string", "format": "int-or-string"}},
            },
            "a.Part": {"properties": {"again": {"$ref": "#/definitions/a.Part"}}},
        }});
        let dir = std::env::temp_dir().join(format!("verdant-kubeschema-{}", std::process::id()));
        assert_eq!(write(&dir, &openapi, &[]).unwrap(), 1);
        let schema: Value =
            serde_json::from_slice(&std::fs::read(dir.join("apps/v1/thing.json")).unwrap())
                .unwrap();
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(schema["properties"]["part"]["additionalProperties"], false);
        assert_eq!(
            schema["properties"]["part"]["properties"]["again"],
            json!({})
        );
        assert_eq!(schema["properties"]["port"]["oneOf"][1]["type"], "integer");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_core_group_lives_under_v1() {
        let dir = Path::new("/s");
        assert_eq!(
            path(dir, "v1", "ConfigMap"),
            Path::new("/s/v1/v1/configmap.json")
        );
        assert_eq!(
            path(dir, "apps/v1", "Deployment"),
            Path::new("/s/apps/v1/deployment.json")
        );
    }
}
