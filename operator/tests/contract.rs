//! The CRD and the launcher agree: every Desktop the apiserver admits at the edges of the
//! CRD's bounds becomes a launcher config the launcher accepts. The bounds are read from the
//! generated CRD schema, so a change on either side that breaks the contract fails here.

use crds::Desktop;
use kube::CustomResourceExt;
use launcher_api::{LauncherConfig, parse_size};
use operator::desktop::build::{BuildContext, build_pod, launcher_config};
use serde_json::{Value, json};

/// The schema of `spec` in the Desktop CRD.
fn spec_schema() -> Value {
    let crd = serde_json::to_value(Desktop::crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
}

fn number(schema: &Value, key: &str) -> u64 {
    // Whole numbers; the schema may write them as 64.0.
    let value = schema[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} in {schema}"));
    assert!(value >= 0.0 && value.fract() == 0.0, "{key} in {schema}");
    value as u64
}

/// The quantity a CEL rule compares memory with (`compareTo(quantity('X')) OP 0`).
fn memory_bound(schema: &Value, op: &str) -> String {
    let rules = schema["x-kubernetes-validations"].as_array().unwrap();
    rules
        .iter()
        .filter_map(|r| r["rule"].as_str())
        .find(|r| r.ends_with(&format!("{op} 0")) && r.contains("compareTo(quantity('"))
        .and_then(|r| r.split("quantity('").nth(1)?.split('\'').next())
        .unwrap_or_else(|| panic!("no memory rule with {op} in {rules:?}"))
        .to_owned()
}

#[test]
fn every_desktop_at_the_crds_bounds_runs_on_the_launcher() {
    let spec = spec_schema();
    let props = &spec["properties"];
    let cpus = &props["resources"]["properties"]["cpus"];
    let memory = &props["resources"]["properties"]["memory"];
    let width = &props["display"]["properties"]["width"];
    let height = &props["display"]["properties"]["height"];
    let cmdline = &props["boot"]["properties"]["cmdline"];

    let cpu_bounds = [number(cpus, "minimum"), number(cpus, "maximum")];
    let memory_bounds = [memory_bound(memory, ">="), memory_bound(memory, "<=")];
    let display_bounds = [
        (number(width, "minimum"), number(height, "minimum")),
        (number(width, "maximum"), number(height, "maximum")),
    ];
    let longest_cmdline = "x".repeat(number(cmdline, "maxLength") as usize);
    for quantity in &memory_bounds {
        assert!(
            parse_size(quantity).is_ok(),
            "the launcher reads {quantity}"
        );
    }

    let mut checked = 0;
    for cpus in cpu_bounds {
        for memory in &memory_bounds {
            for (width, height) in display_bounds {
                for cmdline in ["", longest_cmdline.as_str()] {
                    let desktop: Desktop = serde_json::from_value(json!({
                        "apiVersion": "vdi.verdant.dev/v1alpha1",
                        "kind": "Desktop",
                        "metadata": {"name": "edge", "namespace": "ns", "uid": "u-1"},
                        "spec": {
                            "resources": {"cpus": cpus, "memory": memory},
                            "boot": {"kernel": {"hostPath": "/var/lib/verdant/k"}, "cmdline": cmdline},
                            "display": {"width": width, "height": height},
                        },
                    }))
                    .unwrap();
                    let what = format!(
                        "{cpus} vCPUs, {memory}, {width}x{height}, cmdline of {} bytes",
                        cmdline.len()
                    );
                    let allowed = operator::LauncherPod {
                        host_paths: vec!["/var/lib/verdant".into()],
                        ..Default::default()
                    };
                    let config = launcher_config(&desktop, &allowed.host_paths).unwrap();
                    config
                        .validate()
                        .unwrap_or_else(|e| panic!("{what}: the launcher refuses it: {e}"));
                    let pod = build_pod(
                        &desktop,
                        &BuildContext {
                            launcher_image: "l:1",
                            launcher_pod: &allowed,
                        },
                    )
                    .unwrap_or_else(|e| panic!("{what}: {}", e.message));
                    // The pod carries exactly that config, as the launcher parses it.
                    let args = pod.spec.unwrap().containers[0].args.clone().unwrap();
                    assert_eq!(LauncherConfig::from_json(&args[2]).unwrap(), config);
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 16);
}

#[test]
fn the_crd_bounds_are_the_launcher_limits_where_they_must_be() {
    use launcher_api::limits::{
        CMDLINE_MAX_SIZE, MAX_CPUS, MAX_DISPLAY_HEIGHT, MAX_DISPLAY_WIDTH, MAX_MEMORY,
    };
    let spec = spec_schema();
    let props = &spec["properties"];
    // Where the CRD allows less than the launcher, that is the product's choice (a desktop
    // needs at least 640x480 and 128Mi); the upper bounds are the launcher's own.
    assert_eq!(
        number(&props["resources"]["properties"]["cpus"], "maximum"),
        u64::from(MAX_CPUS)
    );
    assert_eq!(
        number(&props["display"]["properties"]["width"], "maximum"),
        u64::from(MAX_DISPLAY_WIDTH)
    );
    assert_eq!(
        number(&props["display"]["properties"]["height"], "maximum"),
        u64::from(MAX_DISPLAY_HEIGHT)
    );
    let memory = &props["resources"]["properties"]["memory"];
    assert_eq!(parse_size(&memory_bound(memory, "<=")), Ok(MAX_MEMORY));
    assert_eq!(
        number(&props["boot"]["properties"]["cmdline"], "maxLength") as usize,
        CMDLINE_MAX_SIZE - 1
    );
}
