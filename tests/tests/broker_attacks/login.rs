//! Logins: where one sends the browser, a rotated signing key, the login cookie, and small bounds.

use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_login_never_sends_the_browser_to_another_host() {
    let Some(s) = crate::env("redirect", 0, false, "Floating").start().await else {
        return;
    };
    let origin = s.broker().url.origin();
    // The classic bypasses of a "starts with one slash" check, as a browser would send them
    // (decoded from the query): where the broker then sends the browser, as the browser
    // reads the Location (tabs and newlines dropped, backslashes as slashes).
    let bypasses = [
        "/\t/evil.example",
        "/%09/evil.example",
        "/\n/evil.example",
        "/\r\n/evil.example",
        "//evil.example",
        "///evil.example",
        "/\\evil.example",
        "\\/evil.example",
        "/\\/evil.example",
        "%2f%2fevil.example",
        "/%2f%2fevil.example",
        "/%5c%5cevil.example",
        "https://evil.example",
        "https:evil.example",
        "//evil.example@vdi.example",
        "/@evil.example",
        "@evil.example",
        "/\u{2215}\u{2215}evil.example",
        "/\u{ff0f}\u{ff0f}evil.example",
        "/\u{2044}\u{2044}evil.example",
        "/a/../..//evil.example",
        "/.//evil.example",
        " //evil.example",
        "javascript:alert(1)",
    ];
    let mut wrong = Vec::new();
    for next in bypasses {
        let session = s.broker().session();
        let to = match s
            .broker()
            .login_to(&s.cp, &session, "alice", "alice-pw", Some(next))
            .await
        {
            Ok(to) => to,
            Err(e) => {
                wrong.push(format!("{next:?}: the login failed: {e}"));
                continue;
            }
        };
        let stays = to.origin() == origin;
        eprintln!(
            "next={next:?}: the browser goes to {to} ({})",
            if stays { "the portal" } else { "ANOTHER HOST" }
        );
        if !stays {
            wrong.push(format!("{next:?} -> {to}"));
        }
    }
    assert!(wrong.is_empty(), "logins that left the portal: {wrong:?}");
    // And a local path still works.
    let to = s
        .broker()
        .login_to(
            &s.cp,
            &s.broker().session(),
            "alice",
            "alice-pw",
            Some("/desktops/redirect/x?y=1"),
        )
        .await
        .unwrap();
    assert_eq!(
        (to.origin() == origin, to.path(), to.query()),
        (true, "/desktops/redirect/x", Some("y=1"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logins_go_on_after_the_provider_rotates_its_signing_key() {
    let Some(s) = crate::env("rotation", 0, false, "Floating").start().await else {
        return;
    };
    s.login("alice").await;
    let provider = s.cp.oidc().expect("the OpenID provider");
    for round in 1..=2 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        provider.rotate_key().await.unwrap();
        // The next login's ID token names a key the broker has never seen: it fetches the
        // provider's keys again, not after a restart.
        let session = s.broker().session();
        let started = Instant::now();
        s.broker()
            .login(&s.cp, &session, "bob", "bob-pw")
            .await
            .unwrap_or_else(|e| panic!("a login after rotation {round}: {e}"));
        eprintln!("rotation {round}: bob logged in, {:?}", started.elapsed());
        let portal = s.page(&session, "/").await;
        assert!(
            portal.contains("Signed in as <strong>bob</strong>"),
            "{portal}"
        );
    }
    // One fetch of the keys per rotation (the broker's log says each).
    let log = std::fs::read_to_string(&s.broker().log).unwrap_or_default();
    let fetches = log.matches("fetched the provider's keys again").count();
    assert_eq!(fetches, 2, "one fetch per rotation:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn login_cookie_provider_errors_metrics_and_viewers_per_user_are_bounded() {
    let Some(s) = crate::env("small-holes", 1, true, "Floating").start().await else {
        return;
    };
    // The login cookie is pinned to this host (`__Host-`, Secure, path /).
    let start = s
        .broker()
        .http()
        .get(s.broker().at("/login"))
        .send()
        .await
        .unwrap();
    let cookies: Vec<String> = start
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("__Host-verdant-login=")
                && c.contains("Secure")
                && c.contains("Path=/")),
        "{cookies:?}"
    );
    // Whatever a link puts in ?error= reaches the page and the log only as bounded,
    // printable text.
    let mut callback = s.broker().at("/auth/callback");
    callback
        .query_pairs_mut()
        .append_pair("error", "access_denied\r\nX-Injected: 1")
        .append_pair(
            "error_description",
            &format!("<script>alert(1)</script>{}", "y".repeat(5000)),
        );
    let page = s.broker().http().get(callback).send().await.unwrap();
    assert_eq!(page.status(), 401);
    assert!(page.headers().get("x-injected").is_none());
    let body = page.text().await.unwrap();
    assert!(!body.contains("<script>alert"), "{body}");
    assert!(body.len() < 4000, "the page echoes {} bytes", body.len());
    let log = std::fs::read_to_string(&s.broker().log).unwrap_or_default();
    assert!(!log.contains("X-Injected: 1\n") && !log.contains(&"y".repeat(300)));

    // /metrics is not on the users' port, which an Ingress exposes; it is on its own.
    let public = s
        .broker()
        .http()
        .get(s.broker().at("/metrics"))
        .send()
        .await;
    assert_eq!(public.unwrap().status(), 404, "/metrics on the users' port");
    let metrics = reqwest::get(s.broker().metrics_url()).await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics.text().await.unwrap().contains("verdant_broker_"));

    // One user, eight viewers at most through one broker; the ninth is refused with 429.
    let alice = s.login("alice").await;
    let desktop = s.connect(&alice, "eng").await;
    let mut viewers = Vec::new();
    for _ in 0..8 {
        viewers.push(s.viewer(&alice, &desktop).await);
    }
    let grant: serde_json::Value = s.token(&alice, &desktop).await.json().await.unwrap();
    let mut url = s.broker().at(grant["path"].as_str().unwrap());
    url.set_scheme("wss").unwrap();
    let cookie = alice.cookie(&s.broker().url);
    let ninth = tests::wsrfb::connect(
        &url,
        &s.broker().ca,
        &[("cookie", &cookie), ("origin", &s.origin())],
    )
    .await;
    assert!(
        matches!(ninth, Err(tests::wsrfb::WsError::Status(429))),
        "a ninth viewer: {:?}",
        ninth.err()
    );
    drop(viewers);
}
