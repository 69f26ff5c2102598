//! The user's whole path in a real browser: headless Chromium (playwright-core, driven by
//! tests/browser/portal.mjs) logs in at the OpenID provider's form, connects to a pool from
//! the portal, and uses the demo desktop in noVNC through the broker: pixels, typing, the
//! clipboard both ways (checked with a second, direct viewer), disconnect, reconnect within
//! the disconnect timeout (same desktop), release and connect again (a fresh one), Ctrl+Alt+Del
//! (the demo guest powers off on it), log out. The desktops run in real pods on a real node:
//! the kubelet starts the launcher image in runc (tests::node).

use std::process::Stdio;
use std::time::Duration;

use crds::SessionState;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use testkit::eventually;
use tests::brokerenv::LIMIT;
use tests::env::NodeKind;
use tests::wsrfb::RfbClient;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// How long one browser step may take.
const STEP: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_logs_in_with_a_browser_and_works_on_their_desktop() {
    let Some(browser) = tests::broker::browser_scripts() else {
        return;
    };
    // The desktops run in real pods: the kubelet starts the launcher image in runc.
    let env = tests::brokerenv::builder("broker-browser", 2).node(NodeKind::Real);
    let Some(s) = env.start().await else {
        return;
    };
    let ns = s.ns.clone();
    let desktops = s.desktops();
    let secrets: Api<Secret> = Api::namespaced(s.client.clone(), &ns);
    let shots = std::env::var("VERDANT_SCREENSHOTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| s.cp.dir().join("screenshots"));
    std::fs::create_dir_all(&shots).unwrap();

    let mut script = tokio::process::Command::new("node")
        .arg(browser.join("portal.mjs"))
        .env("BROKER_URL", s.broker().url.as_str())
        .env("USER", "alice")
        .env("PASSWORD", "alice-pw")
        .env("POOL", "eng")
        .env("NAMESPACE", &ns)
        .env("SHOTS", &shots)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let mut stdin = script.stdin.take().unwrap();
    let mut stdout = BufReader::new(script.stdout.take().unwrap()).lines();
    let mut stderr = BufReader::new(script.stderr.take().unwrap()).lines();
    let stderr_text = tokio::spawn(async move {
        let mut text = String::new();
        while let Ok(Some(line)) = stderr.next_line().await {
            text.push_str(&line);
            text.push('\n');
        }
        text
    });

    let mut first = String::new();
    let mut first_pod = String::new();
    let mut direct: Option<RfbClient<tokio::net::TcpStream>> = None;
    let mut seen = Vec::new();
    loop {
        let line = match tokio::time::timeout(STEP, stdout.next_line()).await {
            Ok(Ok(Some(line))) => line,
            Ok(_) => break,
            Err(_) => panic!("the browser script said nothing for {STEP:?} after {seen:?}"),
        };
        eprintln!("browser: {line}");
        let Some(rest) = line.strip_prefix("step ") else {
            continue;
        };
        let (step, detail) = rest.split_once(' ').unwrap_or((rest, ""));
        seen.push(step.to_owned());
        let answer: Option<&str> = match step {
            "desktop" => {
                first = detail.to_owned();
                None
            }
            "typed" => {
                // A second viewer, straight to the launcher with the desktop's password.
                let d = desktops.get(&first).await.unwrap();
                first_pod = d.status.unwrap().pod_name.unwrap();
                let pod = s.pods().get(&first_pod).await.unwrap();
                let ip: std::net::IpAddr = pod
                    .status
                    .and_then(|st| st.pod_ip)
                    .expect("the pod has an IP")
                    .parse()
                    .unwrap();
                let secret = secrets
                    .get(&crds::labels::display_secret_name(&first))
                    .await
                    .unwrap();
                let password = secret.data.unwrap().remove("password").unwrap().0;
                let tcp = tokio::net::TcpStream::connect((ip, launcher_api::endpoints::VNC_PORT))
                    .await
                    .unwrap();
                let mut viewer = RfbClient::handshake(tcp, Some(&password)).await.unwrap();
                let (w, h) = (viewer.width, viewer.height);
                viewer.request(false, 0, 0, w, h).await.unwrap();
                direct = Some(viewer);
                None
            }
            "pasted" => {
                let viewer = direct.as_mut().unwrap();
                let text = tokio::time::timeout(LIMIT, viewer.read_cut_text())
                    .await
                    .expect("clipboard text in time")
                    .unwrap();
                assert_eq!(
                    text, b"from the browser",
                    "the desktop's clipboard has what the browser pasted"
                );
                Some("checked")
            }
            "expect-clipboard" => {
                direct
                    .as_mut()
                    .unwrap()
                    .send_cut_text(b"from the desktop")
                    .await
                    .unwrap();
                None
            }
            "clipboard" => {
                assert_eq!(
                    detail, "from the desktop",
                    "the clipboard field shows the desktop's text"
                );
                None
            }
            "disconnected" => {
                let a = eventually("status.assignment to say Disconnected", LIMIT, || async {
                    let a = desktops.get(&first).await.ok()?.status?.assignment?;
                    (a.session == Some(SessionState::Disconnected)).then_some(a)
                })
                .await;
                assert_eq!(a.user, "alice");
                assert!(a.disconnected_at.is_some(), "{a:?}");
                Some("checked")
            }
            "reconnected" => {
                assert_eq!(
                    detail, first,
                    "a reconnect within the disconnect timeout gets the same desktop"
                );
                eventually(
                    "status.assignment to say Connected again",
                    LIMIT,
                    || async {
                        let a = desktops.get(&first).await.ok()?.status?.assignment?;
                        (a.session == Some(SessionState::Connected) && a.disconnected_at.is_none())
                            .then_some(())
                    },
                )
                .await;
                Some("checked")
            }
            "released" => {
                eventually(
                    "the released desktop to be nobody's and a desktop to be free",
                    LIMIT,
                    || async {
                        let released = desktops.get(&first).await.ok()?.spec.user.is_none();
                        let list = desktops.list(&Default::default()).await.ok()?;
                        (released && list.iter().any(assignment::available)).then_some(())
                    },
                )
                .await;
                Some("ready")
            }
            "fresh" => {
                let d = desktops.get(detail).await.unwrap();
                assert_eq!(d.spec.user.as_deref(), Some("alice"));
                let pod = d.status.unwrap().pod_name.unwrap();
                assert_ne!(
                    pod, first_pod,
                    "after release a fresh desktop (a new launcher), not the old VM"
                );
                Some("checked")
            }
            "ctrl-alt-del" => {
                // The demo guest powers off on Ctrl+Alt+Del; the operator says so, from the
                // launcher's exit status, and starts it again.
                eventually(
                    "an event saying the desktop's guest powered off",
                    LIMIT,
                    || async {
                        s.events_for(detail)
                            .await
                            .iter()
                            .any(|e| e.reason.as_deref() == Some("GuestPoweredOff"))
                            .then_some(())
                    },
                )
                .await;
                Some("checked")
            }
            "problems" => panic!("the browser reported errors: {detail}"),
            _ => None,
        };
        if let Some(word) = answer {
            stdin
                .write_all(format!("{word}\n").as_bytes())
                .await
                .unwrap();
        }
    }
    let status = script.wait().await.unwrap();
    let errors = stderr_text.await.unwrap();
    assert!(
        status.success(),
        "the browser script failed after {seen:?}:\n{errors}"
    );
    for step in [
        "portal",
        "desktop",
        "typed",
        "pasted",
        "clipboard",
        "disconnected",
        "reconnected",
        "released",
        "fresh",
        "ctrl-alt-del",
        "restarted",
        "logged-out",
    ] {
        assert!(
            seen.iter().any(|s| s == step),
            "step {step} never came: {seen:?}"
        );
    }
    eprintln!("screenshots in {}", shots.display());
}
