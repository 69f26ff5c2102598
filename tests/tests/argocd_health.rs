//! What GitOps tools make of Desktops and pools as the operator writes them, on real objects
//! from a real apiserver:
//! - the Argo CD health checks the chart's README documents, run as Argo CD runs them (Lua
//!   5.1, `obj` the live object, the script returns `{status, message}`): Progressing while
//!   they start, Healthy once Ready, Degraded when a desktop failed or a pool cannot converge;
//! - kstatus, the rules Flux (and kpt, and `cli-utils` appliers) decide health with, run
//!   itself (`verdant-kstatus`, built from `sigs.k8s.io/cli-utils`): InProgress while they
//!   converge, Current once Ready, Failed at once for a spec that cannot run, so an apply
//!   reports it instead of waiting out its timeout.

use crds::DesktopPhase;
use kube::ResourceExt;
use mlua::LuaSerdeExt;
use serde_json::json;
use testkit::eventually;
use tests::env::Env;

/// The health scripts of the README's `argocd-cm` snippet, by kind.
fn scripts() -> (String, String) {
    let readme =
        std::fs::read_to_string(tests::chart::root().join("charts/verdant/README.md")).unwrap();
    let start = readme
        .find("```yaml\nresource.customizations.health.")
        .expect("the README shows the argocd-cm health checks")
        + "```yaml\n".len();
    let end = start + readme[start..].find("```").unwrap();
    let config: serde_json::Value =
        serde_saphyr::from_str(&readme[start..end]).expect("the snippet is YAML");
    let get = |key: &str| {
        config[key]
            .as_str()
            .unwrap_or_else(|| panic!("the snippet lacks {key}"))
            .to_owned()
    };
    (
        get("resource.customizations.health.vdi.verdant.dev_Desktop"),
        get("resource.customizations.health.vdi.verdant.dev_DesktopPool"),
    )
}

/// Runs `script` on `object`; its status and message.
fn health(script: &str, object: &impl serde::Serialize) -> (String, String) {
    let lua = mlua::Lua::new();
    let options = mlua::serde::SerializeOptions::new()
        .serialize_none_to_null(false)
        .serialize_unit_to_null(false);
    let obj = lua
        .to_value_with(object, options)
        .expect("the object converts");
    lua.globals().set("obj", obj).unwrap();
    let hs: mlua::Table = lua.load(script).eval().expect("the health check runs");
    (
        hs.get("status").unwrap(),
        hs.get::<Option<String>>("message")
            .unwrap()
            .unwrap_or_default(),
    )
}

/// What kstatus computes for `object`: its status and message.
fn kstatus(object: &impl serde::Serialize) -> (String, String) {
    use std::io::Write;
    let binaries = tests::controlplane::Binaries::locate().expect("the control-plane tools");
    let mut child = std::process::Command::new(&binaries.kstatus)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("verdant-kstatus runs");
    let mut line = serde_json::to_vec(object).unwrap();
    line.push(b'\n');
    child.stdin.take().unwrap().write_all(&line).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "verdant-kstatus: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        result["status"].as_str().unwrap().to_owned(),
        result["message"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn argo_cd_and_kstatus_follow_desktops_and_pools() {
    let (desktop_check, pool_check) = scripts();
    let env = Env::start("argocd").await;

    // A desktop: Progressing until its launcher is ready, then Healthy.
    env.create_desktop("alice-dev", None).await;
    let pod = env.wait_pod("alice-dev", None).await;
    let starting = env.desktops().get("alice-dev").await.unwrap();
    let (status, message) = health(&desktop_check, &starting);
    assert_eq!(status, "Progressing", "{message}");
    let (status, message) = kstatus(&starting);
    assert_eq!(status, "InProgress", "{message}");
    env.kubelet.schedule(&pod.name_any()).await.unwrap();
    env.kubelet.run(&pod.name_any(), true).await.unwrap();
    let ready = env.wait_phase("alice-dev", DesktopPhase::Ready).await;
    let (status, message) = health(&desktop_check, &ready);
    assert_eq!(status, "Healthy", "{message}");
    let (status, message) = kstatus(&ready);
    assert_eq!(status, "Current", "{message}");

    // A desktop that cannot start (its boot claim is missing): Degraded, saying why.
    env.create_desktop_with(
        "bob-dev",
        json!({
            "resources": {"cpus": 1, "memory": "1Gi"},
            "boot": {"kernel": {"persistentVolumeClaim": {"claimName": "kernels", "path": "vmlinuz"}}},
        }),
    )
    .await;
    let failed = env.wait_phase("bob-dev", DesktopPhase::Failed).await;
    let (status, message) = health(&desktop_check, &failed);
    assert_eq!(status, "Degraded", "{message}");
    assert!(
        message.contains("kernels"),
        "the message says why: {message}"
    );
    let (status, message) = kstatus(&failed);
    assert_eq!(status, "Failed", "{message}");
    assert!(message.contains("kernels"), "kstatus says why: {message}");

    // A pool: Progressing while its desktops start, Healthy when all are Ready.
    env.create_pool("office", json!({"replicas": 2})).await;
    let pods = eventually("two launcher pods of office", tests::env::LIMIT, || async {
        let pods = tests::env::live(&env.pods(), "vdi.verdant.dev/pool=office").await?;
        (pods.len() == 2).then_some(pods)
    })
    .await;
    let pool = eventually("office's first status", tests::env::LIMIT, || async {
        let pool = env.pools().get("office").await.ok()?;
        pool.status.is_some().then_some(pool)
    })
    .await;
    let (status, message) = health(&pool_check, &pool);
    assert_eq!(status, "Progressing", "{message}");
    let (status, message) = kstatus(&pool);
    assert_eq!(status, "InProgress", "{message}");
    for pod in &pods {
        env.kubelet.schedule(&pod.name_any()).await.unwrap();
        env.kubelet.run(&pod.name_any(), true).await.unwrap();
    }
    let healthy = eventually("office Healthy", tests::env::LIMIT, || async {
        let pool = env.pools().get("office").await.ok()?;
        let (status, message) = health(&pool_check, &pool);
        (status == "Healthy").then_some(message)
    })
    .await;
    println!("office: Healthy ({healthy})");
    let pool = env.pools().get("office").await.unwrap();
    let (status, message) = kstatus(&pool);
    assert_eq!(status, "Current", "{message}");

    // A pool whose desktops cannot run (their kernel's claim is missing): Degraded and
    // Failed, naming a desktop and why, once its desktops say so.
    env.create_pool(
        "lab",
        json!({"replicas": 1, "template": {"spec": {
            "resources": {"cpus": 1, "memory": "1Gi"},
            "boot": {"kernel": {"persistentVolumeClaim": {"claimName": "lab-kernels", "path": "vmlinuz"}}},
        }}}),
    )
    .await;
    let stalled = eventually("lab Failed for kstatus", tests::env::LIMIT, || async {
        let pool = env.pools().get("lab").await.ok()?;
        (kstatus(&pool).0 == "Failed").then_some(pool)
    })
    .await;
    let (_, message) = kstatus(&stalled);
    assert!(
        message.contains("lab-0") && message.contains("lab-kernels"),
        "kstatus says which desktop and why: {message}"
    );
    let (status, message) = health(&pool_check, &stalled);
    assert_eq!(status, "Degraded", "{message}");
}
