//! The broker's authorization table: every way in that must be refused, as real HTTP and
//! WebSocket requests to a real broker in front of a real apiserver, OpenID provider and
//! desktops. Each is refused with the right status and, where a desktop is involved, with the
//! same answer whether or not the desktop exists. The table is written to stderr (past the
//! test harness's capture, and also when a case panics half-way); every row is asserted.

use std::fmt::Display;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kube::api::ListParams;
use reqwest::header::{AUTHORIZATION, LOCATION};
use serde_json::Value;
use tests::broker::Session;
use tests::brokerenv::{BrokerEnv, setup};
use tests::wsrfb::{RfbClient, WsError, websocket};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// One row: case, request, expected, got, whether it holds.
struct Row(&'static str, String, String, String, bool);

/// The table; printed when dropped, so a panic in the middle still shows what ran.
#[derive(Default)]
struct Table {
    case: &'static str,
    rows: Vec<Row>,
}

impl Table {
    /// A row that holds when `got` reads exactly as `expected`.
    fn row(&mut self, request: impl Into<String>, expected: impl Display, got: impl Display) {
        let (expected, got) = (expected.to_string(), got.to_string());
        let ok = expected == got;
        self.check(request, &expected, got, ok);
    }

    /// A row whose condition is not plain equality.
    fn check(&mut self, request: impl Into<String>, expected: &str, got: impl Display, ok: bool) {
        let row = Row(
            self.case,
            request.into(),
            expected.into(),
            got.to_string(),
            ok,
        );
        self.rows.push(row);
    }

    fn finish(self) {
        let wrong: Vec<String> = (self.rows.iter().filter(|r| !r.4))
            .map(|r| format!("{} {}: expected {}, got {}", r.0, r.1, r.2, r.3))
            .collect();
        assert!(
            wrong.is_empty(),
            "{} row(s) wrong:\n{}",
            wrong.len(),
            wrong.join("\n")
        );
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        let width = |f: fn(&Row) -> &str| self.rows.iter().map(|r| f(r).len()).max();
        let q = width(|r| &r.1).unwrap_or(0).max(7);
        let e = width(|r| &r.2).unwrap_or(0).max(8);
        let mut out = format!("\nbroker authorization table ({} rows)\n", self.rows.len());
        out += &format!("case | {:<q$} | {:<e$} | got\n", "request", "expected");
        for Row(case, request, expected, got, ok) in &self.rows {
            let mark = if *ok { "" } else { "   <-- WRONG" };
            out += &format!("{case:<4} | {request:<q$} | {expected:<e$} | {got}{mark}\n");
        }
        // Straight to the process's stderr: the harness captures only eprintln!.
        let _ = std::io::stderr().write_all(out.as_bytes());
    }
}

/// Sends `request`: the status and the body.
async fn answer(request: reqwest::RequestBuilder) -> (u16, String) {
    let response = request.send().await.expect("the broker answers");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

fn same(a: &str, b: &str) -> &'static str {
    if a == b { "identical" } else { "different" }
}

/// Opens the viewer WebSocket at `path` with `headers` and speaks RFB through it: "101+RFB"
/// and the client, or the status it was refused with.
async fn open(
    s: &BrokerEnv,
    path: &str,
    headers: &[(&str, &str)],
) -> (String, Option<RfbClient<DuplexStream>>) {
    let mut url = s.broker.at(path);
    url.set_scheme("wss").unwrap();
    match websocket(&url, &s.broker.ca, headers).await {
        Ok(stream) => match RfbClient::handshake(stream, None).await {
            Ok(client) => ("101+RFB".into(), Some(client)),
            Err(e) => (format!("101, then RFB failed: {e}"), None),
        },
        Err(WsError::Status(code)) => (code.to_string(), None),
        Err(e) => (format!("error: {e}"), None),
    }
}

/// A connect token of `who` for `desktop` (asserted to be issued) and its grant.
async fn grant(s: &BrokerEnv, who: &Session, desktop: &str) -> (String, Value) {
    let response = s.token(who, desktop).await;
    assert_eq!(response.status(), 200, "a token for {desktop}");
    let grant: Value = response.json().await.unwrap();
    (grant["token"].as_str().unwrap().to_owned(), grant)
}

/// Sends a request byte for byte over TLS (a form `body` when not empty), so no client
/// normalises the path or balks at a huge head; the status code of the answer.
async fn raw(s: &BrokerEnv, method: &str, path: &str, with: &[(&str, &str)], body: &str) -> String {
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {}\r\n", s.broker.addr);
    for (name, value) in with {
        head += &format!("{name}: {value}\r\n");
    }
    if !body.is_empty() {
        head += "content-type: application/x-www-form-urlencoded\r\n";
    }
    let length = body.len();
    head += &format!("content-length: {length}\r\nconnection: close\r\n\r\n{body}");
    use rustls_pki_types::pem::PemObject;
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(&s.broker.ca).unwrap();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from(s.broker.addr.ip().to_string()).unwrap();
    let tcp = tokio::net::TcpStream::connect(s.broker.addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let (mut read, mut write) = tokio::io::split(connector.connect(name, tcp).await.unwrap());
    // Written while the answer is read: the broker answers a head too large before reading all.
    let writer = tokio::spawn(async move {
        let _ = write.write_all(head.as_bytes()).await;
        let _ = write.flush().await;
        write
    });
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = [0u8; 4096];
        while !got.windows(2).any(|w| w == b"\r\n") {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    writer.abort();
    let text = String::from_utf8_lossy(&got);
    let code = text.split_whitespace().nth(1).map(str::to_owned);
    code.unwrap_or_else(|| format!("no answer ({} bytes)", got.len()))
}

/// How many desktops of the test's namespace are assigned to `user`.
async fn owned(s: &BrokerEnv, user: &str) -> usize {
    let list = s.env.desktops().list(&ListParams::default()).await.unwrap();
    let user = Some(user);
    list.iter()
        .filter(|d| d.spec.user.as_deref() == user)
        .count()
}

/// Reads updates until (x, y) is `colour` or 30 s pass; the pixel's last value.
async fn watch(viewer: &mut RfbClient<DuplexStream>, x: u16, y: u16, colour: u32) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let (w, h) = (viewer.width, viewer.height);
    viewer.request(false, 0, 0, w, h).await.unwrap();
    while viewer.pixel(x, y) != colour {
        match tokio::time::timeout_at(deadline, viewer.read_update()).await {
            Ok(Ok(_)) => viewer.request(true, 0, 0, w, h).await.unwrap(),
            _ => break,
        }
    }
    format!("{:06x}", viewer.pixel(x, y))
}

/// The clipboard text the server sends `viewer` within `wait`, if any: it asks for a 1x1
/// update after each one, so the server keeps answering and the text comes out between them.
async fn clipboard_in(viewer: &mut RfbClient<DuplexStream>, wait: Duration) -> Option<Vec<u8>> {
    let deadline = tokio::time::Instant::now() + wait;
    viewer.cut_text = None;
    while viewer.cut_text.is_none() {
        viewer.request(false, 0, 0, 1, 1).await.ok()?;
        if !matches!(
            tokio::time::timeout_at(deadline, viewer.read_update()).await,
            Ok(Ok(_))
        ) {
            break;
        }
    }
    viewer.cut_text.take()
}

/// `token` with the base64 character at byte `at` changed: still well-formed, MAC wrong.
fn flip(token: &str, at: usize) -> String {
    let mut bytes = token.as_bytes().to_vec();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_refusal_has_the_right_status_and_leaks_nothing() {
    let started = Instant::now();
    let Some(s) = setup("broker-auth", 2).await else {
        return;
    };
    let (ns, origin, evil) = (s.env.ns.clone(), s.origin(), "https://evil.example");
    let at = |path: &str| s.broker.at(path);
    let vnc = |d: &str, token: &str| format!("/desktops/{ns}/{d}/vnc?token={token}");
    let mut t = Table::default();
    let (alice, bob, carol, eve) = tokio::join!(
        s.login("alice"),
        s.login("bob"),
        s.login("carol"),
        s.login("eve")
    );
    let csrf = tokio::join!(
        s.broker.csrf(&alice),
        s.broker.csrf(&bob),
        s.broker.csrf(&carol),
        s.broker.csrf(&eve)
    );
    let (a_csrf, b_csrf) = (csrf.0.unwrap(), csrf.1.unwrap());
    let (c_csrf, e_csrf) = (csrf.2.unwrap(), csrf.3.unwrap());
    let cookies = [&alice, &bob, &carol].map(|who| who.cookie(&s.broker.url));
    let [a_as, b_as, c_as] = [0, 1, 2].map(|i| [("cookie", &*cookies[i]), ("origin", &*origin)]);
    let connect =
        |who: &Session, pool: &str| who.http.post(at(&format!("/pools/{ns}/{pool}/connect")));

    // 5. Cross-site Connect, while alice has no desktop yet: nothing may be assigned.
    t.case = "5";
    let before = owned(&s, "alice").await;
    let wrong = "x".repeat(a_csrf.len());
    let (own, cross) = (Some(&*origin), Some("cross-site"));
    for (what, from, site, field) in [
        (
            "Origin evil.example, right csrf",
            Some(evil),
            None,
            Some(&*a_csrf),
        ),
        ("same Origin, no csrf field", own, None, None),
        ("same Origin, wrong csrf", own, None, Some(&*wrong)),
        ("same Origin, bob's csrf", own, None, Some(&*b_csrf)),
        (
            "no Origin, Sec-Fetch-Site cross-site, right csrf",
            None,
            cross,
            Some(&*a_csrf),
        ),
    ] {
        let mut request = connect(&alice, "eng");
        if let Some(from) = from {
            request = request.header("origin", from);
        }
        if let Some(site) = site {
            request = request.header("sec-fetch-site", site);
        }
        let form = field.map_or(vec![("x", "1")], |f| vec![("csrf", f)]);
        let (status, _) = answer(request.form(&form)).await;
        t.row(format!("alice POST connect eng: {what}"), 403, status);
    }
    let after = owned(&s, "alice").await;
    t.row(
        "alice's desktops before -> after those",
        "0 -> 0",
        format!("{before} -> {after}"),
    );

    // The desktops: alice's and bob's.
    t.case = "-";
    let (a, b) = (s.connect(&alice, "eng").await, s.connect(&bob, "eng").await);
    t.check(
        "alice, bob connect to eng",
        "two desktops",
        format!("{a}, {b}"),
        a != b,
    );
    // 3. (expired) A token issued now and used at the end, past its 30 s.
    let (expired, _) = grant(&s, &alice, &a).await;
    let expires = Instant::now() + Duration::from_secs(31);

    // 1. Someone else's desktop answers exactly as a missing one.
    t.case = "1";
    let none = "no-such-desktop";
    for (who, name, csrf) in [("bob", &bob, &b_csrf), ("eve", &eve, &e_csrf)] {
        let page = |d: &str| name.http.get(at(&format!("/desktops/{ns}/{d}")));
        let api = |d: &str| name.http.get(at(&format!("/api/desktops/{ns}/{d}")));
        let token = |d: &str| {
            let request = name.http.post(at(&format!("/api/desktops/{ns}/{d}/token")));
            request
                .header("origin", &origin)
                .header("x-csrf-token", csrf)
        };
        for (what, theirs, missing) in [
            ("GET /desktops/ns/", page(&a), page(none)),
            ("GET /api/desktops/ns/", api(&a), api(none)),
            ("POST /api/desktops/ns/<d>/token", token(&a), token(none)),
        ] {
            let (theirs, missing) = (answer(theirs).await, answer(missing).await);
            let on = |d: &str| match what.contains("<d>") {
                true => format!("{who} {}", what.replace("<d>", d)),
                false => format!("{who} {what}{d}"),
            };
            t.row(on("<alice's>"), 404, theirs.0);
            t.row(on(none), 404, missing.0);
            t.row(
                format!("{}: both bodies", on("*")),
                "identical",
                same(&theirs.1, &missing.1),
            );
        }
    }

    // 2. Pools not granted, existing or not: the same 403.
    t.case = "2";
    let connect = |who: &Session, csrf: &str, pool: &str| {
        let form = [("csrf", csrf.to_owned())];
        connect(who, pool).header("origin", &origin).form(&form)
    };
    let (status, _) = answer(connect(&eve, &e_csrf, "eng")).await;
    t.row("eve (no group) POST connect eng", 403, status);
    let (status, _) = answer(connect(&carol, &c_csrf, "eng")).await;
    t.row("carol (helpdesk only) POST connect eng", 403, status);
    let secret = answer(connect(&alice, &a_csrf, "secret")).await;
    t.row("alice POST connect secret", 403, secret.0);
    let missing = answer(connect(&alice, &a_csrf, "no-such-pool")).await;
    t.row("alice POST connect no-such-pool", 403, missing.0);
    let masked = |body: &str, pool: &str| body.replace(&format!("pool {pool} "), "pool <p> ");
    let bodies = same(
        &masked(&secret.1, "secret"),
        &masked(&missing.1, "no-such-pool"),
    );
    t.row(
        "secret vs no-such-pool: bodies, name masked",
        "identical",
        bodies,
    );
    t.row("alice's desktops after those", 1, owned(&s, "alice").await);

    // 3. Forged and replayed tokens.
    t.case = "3";
    let (token, _) = grant(&s, &alice, &a).await;
    let dot = token.find('.').unwrap();
    let (view, _) = grant(&s, &carol, &a).await;
    let (body, tag) = view.split_once('.').unwrap();
    let json = String::from_utf8(URL_SAFE_NO_PAD.decode(body).unwrap()).unwrap();
    let widened = json.replace("\"view_only\":true", "\"view_only\":false");
    assert_ne!(json, widened, "carol's grant is view-only: {json}");
    let widened = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(widened));
    for (what, forged, with) in [
        (
            "alice's, MAC's first character changed",
            flip(&token, dot + 1),
            &a_as,
        ),
        (
            "alice's, body's first character changed",
            flip(&token, 0),
            &a_as,
        ),
        ("carol's view-only grant made full, old MAC", widened, &c_as),
    ] {
        let (got, _) = open(&s, &vnc(&a, &forged), with).await;
        t.row(format!("WS forged token: {what}"), 403, got);
    }
    let (got, first) = open(&s, &vnc(&a, &token), &a_as).await;
    t.row(
        "WS alice's token, first use (after the forgeries)",
        "101+RFB",
        got,
    );
    let (got, _) = open(&s, &vnc(&a, &token), &a_as).await;
    t.row("WS alice's token again (replayed)", 403, got);
    drop(first);

    // 4. No cookie.
    t.case = "4";
    let anon = s.broker.http();
    let request = anon.post(at(&format!("/api/desktops/{ns}/{a}/token")));
    let request = request
        .header("origin", &origin)
        .header("x-csrf-token", &a_csrf);
    t.row(
        "no cookie: POST token endpoint",
        401,
        answer(request).await.0,
    );
    let (status, _) = answer(anon.get(at(&format!("/api/desktops/{ns}/{a}")))).await;
    t.row("no cookie: GET /api/desktops/ns/<alice's>", 401, status);
    let (token, _) = grant(&s, &alice, &a).await;
    let (got, _) = open(&s, &vnc(&a, &token), &[("origin", &origin)]).await;
    t.row("no cookie: WS with alice's fresh token", 401, got);
    for path in ["/".to_owned(), format!("/desktops/{ns}/{a}")] {
        let response = anon.get(at(&path)).send().await.unwrap();
        let to = response
            .headers()
            .get(LOCATION)
            .map(|l| l.to_str().unwrap());
        let got = format!("{} {}", response.status().as_u16(), to.unwrap_or_default());
        let next: String = url::form_urlencoded::byte_serialize(path.as_bytes()).collect();
        let hide = |text: &str| text.replace(&a, "<alice's>");
        t.row(
            hide(&format!("no cookie: GET {path}")),
            hide(&format!("303 /login?next={next}")),
            hide(&got),
        );
    }

    // 6. A foreign Origin is refused before the token is looked at; the token stays good.
    t.case = "6";
    let (token, _) = grant(&s, &alice, &a).await;
    let (got, _) = open(&s, &vnc(&a, &token), &[a_as[0], ("origin", evil)]).await;
    t.row(
        "WS Origin evil.example, alice's cookie, fresh token",
        403,
        got,
    );
    let (got, _) = open(&s, &vnc(&a, &token), &a_as).await;
    t.row(
        "the same token afterwards from the own Origin",
        "101+RFB",
        got,
    );

    // 7. A token for one desktop (or session) used for another.
    t.case = "7";
    let (token, _) = grant(&s, &alice, &a).await;
    let (got, _) = open(&s, &vnc(&b, &token), &a_as).await;
    t.row("WS alice's token for <alice's> on <bob's> path", 403, got);
    let (got, _) = open(&s, &vnc(&a, &token), &b_as).await;
    t.row("WS alice's token for <alice's> with bob's cookie", 403, got);

    // 8. Path tricks, sent raw (a URL library resolves %2e%2e before sending).
    t.case = "8";
    let form = format!("csrf={a_csrf}");
    for (method, path, body) in [
        (
            "POST",
            format!("/pools/{ns}/..%2F..%2Fsecrets/connect"),
            &*form,
        ),
        ("POST", format!("/pools/{ns}/%2e%2e/connect"), &*form),
        ("GET", format!("/desktops/{ns}/..%2Fkube-system%2Fx"), ""),
        (
            "GET",
            format!("/api/desktops/{ns}/..%2Fkube-system%2Fx"),
            "",
        ),
    ] {
        let got = raw(&s, method, &path, &a_as, body).await;
        t.row(format!("alice {method} {path}"), 400, got);
    }

    // 9. Request heads over 32 KiB.
    t.case = "9";
    let filler = "f".repeat(64 * 1024);
    let cookie = cookies[0].as_str();
    let got = raw(&s, "GET", "/", &[("x-filler", &*filler), a_as[0]], "").await;
    t.row("GET / with a 64 KiB X-Filler header", 431, got);
    let big = format!("{cookie}; filler={filler}");
    let got = raw(&s, "GET", "/", &[("cookie", &big)], "").await;
    t.row("GET / with a 64 KiB cookie", 431, got);
    let small = &filler[..16 * 1024];
    let got = raw(&s, "GET", "/", &[("x-filler", small), a_as[0]], "").await;
    t.row("GET / with a 16 KiB X-Filler (under the bound)", 200, got);

    // 10. Shadowing: carol watches alice's desktop; her keys go nowhere.
    t.case = "10";
    let (status, body) = answer(carol.http.get(at(&format!("/api/desktops/{ns}/{a}")))).await;
    let view_only = serde_json::from_str::<Value>(&body).map(|v| v["viewOnly"].clone());
    let got = format!("{status} viewOnly={}", view_only.unwrap_or_default());
    t.row(
        "carol GET /api/desktops/ns/<alice's>",
        "200 viewOnly=true",
        got,
    );
    let (token, carols) = grant(&s, &carol, &a).await;
    t.row(
        "carol POST token for <alice's>: viewOnly",
        true,
        &carols["viewOnly"],
    );
    let (got, carol_view) = open(&s, &vnc(&a, &token), &c_as).await;
    t.row("WS carol's view-only token", "101+RFB", got);
    let (token, _) = grant(&s, &alice, &a).await;
    let (got, alice_view) = open(&s, &vnc(&a, &token), &a_as).await;
    t.row("WS alice on her own desktop", "101+RFB", got);
    let (mut carol_view, mut alice_view) = (carol_view.unwrap(), alice_view.unwrap());
    // carol presses 'b' (0x326496 in key slot 0, had it landed); then alice presses 'a',
    // which lands in slot 0 at (108, 128) only if carol's key never reached the desktop.
    carol_view.key(u32::from(b'b')).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    alice_view.key(u32::from(b'a')).await.unwrap();
    let seen = watch(&mut alice_view, 108, 128, 0x1c_3854).await;
    t.row(
        "alice's 'a' is key #0 at (108,128): carol's 'b' dropped",
        "1c3854",
        seen,
    );
    let slot = format!("{:06x}", alice_view.pixel(128, 128));
    t.row("key slot #1 at (128,128): still the window", "f0f0f0", slot);
    let seen = watch(&mut carol_view, 108, 128, 0x1c_3854).await;
    t.row("carol's view shows alice's 'a'", "1c3854", seen);
    // alice copies on one viewer: her other viewer gets the text; carol, who watches with
    // the view-only password, never does (the launcher sends a watcher no clipboard).
    let (token, _) = grant(&s, &alice, &a).await;
    let (_, alice_second) = open(&s, &vnc(&a, &token), &a_as).await;
    let mut alice_second = alice_second.unwrap();
    alice_view
        .send_cut_text(b"alice's clipboard: the payroll password")
        .await
        .unwrap();
    let got = clipboard_in(&mut alice_second, Duration::from_secs(15)).await;
    t.row(
        "alice's second viewer gets her clipboard",
        "alice's clipboard: the payroll password",
        String::from_utf8_lossy(&got.unwrap_or_default()),
    );
    let got = clipboard_in(&mut carol_view, Duration::from_secs(3)).await;
    t.row(
        "carol's view-only viewer gets no clipboard",
        "none",
        got.map_or("none".into(), |t| String::from_utf8_lossy(&t).into_owned()),
    );
    drop((carol_view, alice_view, alice_second));

    // 11. Bearer tokens: reviewed by the apiserver; no cookie and no CSRF token needed.
    t.case = "11";
    let api_a = at(&format!("/api/desktops/{ns}/{a}"));
    let basic = "Basic YWxpY2U6YWxpY2UtcHc=";
    for (what, value, with_cookie) in [
        ("Bearer not-a-token", "Bearer not-a-token", false),
        (
            "Bearer not-a-token and alice's valid cookie",
            "Bearer not-a-token",
            true,
        ),
        (basic, basic, false),
    ] {
        let mut request = anon.get(api_a.clone()).header(AUTHORIZATION, value);
        if with_cookie {
            request = request.header("cookie", cookie);
        }
        let (status, _) = answer(request).await;
        t.row(
            format!("GET /api/desktops/ns/<alice's>, {what}"),
            401,
            status,
        );
    }
    let oidc = s.env.cp.oidc().expect("the provider");
    let callback = "http://127.0.0.1:1/auth/callback";
    let tokens = oidc.login("alice", "alice-pw", callback).await.unwrap();
    let bearer = format!("Bearer {}", tokens.id_token);
    let (status, body) = answer(anon.get(api_a).header(AUTHORIZATION, &bearer)).await;
    let user = serde_json::from_str::<Value>(&body).map(|v| v["user"].clone());
    let got = format!("{status} user={}", user.unwrap_or_default());
    t.row(
        "GET /api/desktops/ns/<alice's>, alice's ID token",
        "200 user=\"alice\"",
        got,
    );
    let api_b = at(&format!("/api/desktops/{ns}/{b}"));
    let (status, _) = answer(anon.get(api_b).header(AUTHORIZATION, &bearer)).await;
    t.row(
        "GET /api/desktops/ns/<bob's>, alice's ID token",
        404,
        status,
    );
    let request = anon.post(at(&format!("/api/desktops/{ns}/{a}/token")));
    let (status, body) = answer(request.header(AUTHORIZATION, &bearer)).await;
    t.row(
        "POST token endpoint, alice's ID token, no CSRF",
        200,
        status,
    );
    let grant: Value = serde_json::from_str(&body).unwrap_or_default();
    let token = grant["token"].as_str().unwrap_or_default();
    let (got, _) = open(&s, &vnc(&a, token), &[("authorization", &bearer), a_as[1]]).await;
    t.row(
        "WS with that token and the bearer, no cookie",
        "101+RFB",
        got,
    );

    // 3. (expired) The token issued right after Connect, now past its 30 s.
    t.case = "3";
    tokio::time::sleep_until(expires.into()).await;
    let (got, _) = open(&s, &vnc(&a, &expired), &a_as).await;
    t.row(
        "WS alice's unused token, 31 s after issue (expired)",
        403,
        got,
    );

    let wall = started.elapsed().as_secs_f64();
    let _ = writeln!(std::io::stderr(), "broker_auth wall time: {wall:.1} s");
    t.finish();
}
