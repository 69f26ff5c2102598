//! What the rows run against (the users' sessions, the desktops), and what each kind of row does.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kube::api::ListParams;
use reqwest::Method;
use reqwest::header::{AUTHORIZATION, LOCATION};
use serde_json::Value;
use tests::broker::Session;
use tests::env::Env;
use tests::wsrfb::RfbClient;
use tokio::io::DuplexStream;

use crate::cases::{Ask, Auth, Case, Csrf, Desktop, Filler, Http, Origin, Part, Raw, Read};
use crate::cases::{Token, Viewer, Who};
use crate::wire;

/// The Origin of [`Origin::Evil`].
const EVIL: &str = "https://evil.example";

/// The users' sessions and the desktops, and what earlier rows leave for later ones.
pub(crate) struct World<'a> {
    s: &'a Env,
    /// The broker's own Origin.
    origin: String,
    /// Alice's, bob's, carol's and eve's sessions, CSRF tokens and Cookie headers.
    sessions: [Session; 4],
    csrf: [String; 4],
    cookies: [String; 4],
    /// A client without cookies.
    anon: reqwest::Client,
    /// Alice's and bob's desktops, once they connected.
    desktops: Option<(String, String)>,
    /// The token issued right after Connect, and when it is past its 30 s.
    expired: Option<(String, Instant)>,
    /// [`Token::Alices`]: the case it was issued in, and the token.
    kept: Option<(&'static str, String)>,
    /// The body of the last HTTP answer ([`Token::Issued`]).
    last_body: String,
    /// The viewer the case's last viewer row opened, open until the next one or the case ends.
    viewer: Option<(&'static str, RfbClient<DuplexStream>)>,
    /// Alice's ID token from the provider, once a row needs it.
    id_token: Option<String>,
}

impl<'a> World<'a> {
    /// Logs the four users in at `s`'s broker.
    pub(crate) async fn login(s: &'a Env) -> Self {
        let (alice, bob, carol, eve) = tokio::join!(
            s.login("alice"),
            s.login("bob"),
            s.login("carol"),
            s.login("eve")
        );
        let csrf = tokio::join!(
            s.broker().csrf(&alice),
            s.broker().csrf(&bob),
            s.broker().csrf(&carol),
            s.broker().csrf(&eve)
        );
        let csrf = [csrf.0, csrf.1, csrf.2, csrf.3].map(Result::unwrap);
        let sessions = [alice, bob, carol, eve];
        let cookies = sessions.each_ref().map(|who| who.cookie(&s.broker().url));
        Self {
            s,
            origin: s.origin(),
            sessions,
            csrf,
            cookies,
            anon: s.broker().http(),
            desktops: None,
            expired: None,
            kept: None,
            last_body: String::new(),
            viewer: None,
            id_token: None,
        }
    }

    /// Runs `case`: what it got, as the table prints it.
    pub(crate) async fn ask(&mut self, case: &Case) -> String {
        if self.viewer.as_ref().is_some_and(|(c, _)| *c != case.case) {
            self.viewer = None;
        }
        let got = match &case.ask {
            Ask::Owned => owned(self.s, case.who.name()).await.to_string(),
            Ask::Connect => self.connect().await,
            Ask::Http(http) => {
                let path = self.fill(http.path);
                let (status, location, body) = self.send(case.who, http, &path).await;
                match http.read {
                    Read::Status => status.to_string(),
                    Read::Location => format!("{status} {location}"),
                    Read::Field(field) => {
                        let value = serde_json::from_str::<Value>(&body).map(|v| v[field].clone());
                        format!("{status} {field}={}", value.unwrap_or_default())
                    }
                }
            }
            Ask::Pair { http, names, mask } => {
                let mut answers = Vec::new();
                for name in names.map(|name| self.fill(name)) {
                    let path = self.fill(http.path).replace("{x}", &name);
                    let (status, _, body) = self.send(case.who, http, &path).await;
                    let masked = format!("pool {name} ");
                    let body = if *mask {
                        body.replace(&masked, "pool <p> ")
                    } else {
                        body
                    };
                    answers.push((status, body));
                }
                let same = if answers[0].1 == answers[1].1 {
                    "identical"
                } else {
                    "different"
                };
                format!("{} {}, bodies {same}", answers[0].0, answers[1].0)
            }
            Ask::Viewer(viewer) => self.viewer(case, viewer).await,
            Ask::Raw(raw) => self.raw(case.who, raw).await,
        };
        self.hide(got)
    }

    /// `text` with the namespace and the desktops in place of `{ns}`, `{alice's}`, `{bob's}`.
    pub(crate) fn fill(&self, text: &str) -> String {
        let text = text.replace("{ns}", &self.s.ns);
        match &self.desktops {
            Some((a, b)) => text.replace("{alice's}", a).replace("{bob's}", b),
            None => text,
        }
    }

    /// `got` with the desktops' names as the table writes them: `<alice's>`, `<bob's>`.
    fn hide(&self, got: String) -> String {
        match &self.desktops {
            Some((a, b)) => got.replace(a, "<alice's>").replace(b, "<bob's>"),
            None => got,
        }
    }

    /// Alice's desktop.
    pub(crate) fn alices(&self) -> &str {
        &self.desktops.as_ref().expect("alice connected").0
    }

    fn session(&self, who: Who) -> &Session {
        &self.sessions[who.index().expect("a logged-in user")]
    }

    fn csrf(&self, who: Who) -> &str {
        &self.csrf[who.index().expect("a logged-in user")]
    }

    /// Alice and bob connect to pool eng; a token for alice's is issued at once, to expire.
    async fn connect(&mut self) -> String {
        let (alice, bob) = (self.session(Who::Alice), self.session(Who::Bob));
        let (a, b) = (
            self.s.connect(alice, "eng").await,
            self.s.connect(bob, "eng").await,
        );
        let got = if a == b {
            format!("one: {a}")
        } else {
            "two desktops".into()
        };
        self.desktops = Some((a, b));
        let (token, _) = self.grant(Who::Alice, "-").await;
        self.expired = Some((token, Instant::now() + Duration::from_secs(31)));
        got
    }

    /// A connect token of `who` for alice's desktop (asserted to be issued) and its grant.
    pub(crate) async fn grant(&self, who: Who, case: &str) -> (String, Value) {
        let response = self.s.token(self.session(who), self.alices()).await;
        let what = format!(
            "case {case}: a token of {}'s for alice's desktop",
            who.name()
        );
        assert_eq!(response.status(), 200, "{what}");
        let grant: Value = response.json().await.unwrap();
        (grant["token"].as_str().unwrap().to_owned(), grant)
    }

    /// Sends `http` to `path` as `who`: the status, the Location and the body.
    async fn send(&mut self, who: Who, http: &Http, path: &str) -> (u16, String, String) {
        let bearer = match http.auth {
            Auth::None => None,
            Auth::Value(value) => Some(value.to_owned()),
            Auth::AlicesIdToken => Some(self.bearer().await),
        };
        let client = match who {
            Who::Nobody => &self.anon,
            _ => &self.session(who).http,
        };
        let method = Method::from_bytes(http.method.as_bytes()).unwrap();
        let mut request = client.request(method, self.s.broker().at(path));
        request = match http.origin {
            Origin::Own => request.header("origin", &self.origin),
            Origin::Evil => request.header("origin", EVIL),
            Origin::Absent => request,
            Origin::CrossSite => request.header("sec-fetch-site", "cross-site"),
        };
        request = match http.csrf {
            Csrf::None => request,
            Csrf::NoField => request.form(&[("x", "1")]),
            Csrf::Field(of) => request.form(&[("csrf", self.csrf(of))]),
            Csrf::Wrong => request.form(&[("csrf", "x".repeat(self.csrf(who).len()))]),
            Csrf::Header(of) => request.header("x-csrf-token", self.csrf(of)),
        };
        if let Some(bearer) = bearer {
            request = request.header(AUTHORIZATION, bearer);
        }
        let response = request.send().await.expect("the broker answers");
        let status = response.status().as_u16();
        let location = response.headers().get(LOCATION);
        let location = location.map(|l| l.to_str().unwrap().to_owned());
        self.last_body = response.text().await.unwrap_or_default();
        (status, location.unwrap_or_default(), self.last_body.clone())
    }

    /// `Bearer` and alice's ID token, from the provider at the first use.
    async fn bearer(&mut self) -> String {
        if self.id_token.is_none() {
            let oidc = self.s.cp.oidc().expect("the provider");
            let callback = "http://127.0.0.1:1/auth/callback";
            let tokens = oidc.login("alice", "alice-pw", callback).await.unwrap();
            self.id_token = Some(tokens.id_token);
        }
        format!("Bearer {}", self.id_token.as_deref().unwrap_or_default())
    }

    /// Opens `viewer` as `who`: "101+RFB", or the status it was refused with.
    async fn viewer(&mut self, case: &Case, viewer: &Viewer) -> String {
        let token = self.token(case.case, viewer.token).await;
        let bearer = match viewer.bearer {
            true => Some(self.bearer().await),
            false => None,
        };
        let (a, b) = self.desktops.as_ref().expect("alice and bob connected");
        let desktop = match viewer.desktop {
            Desktop::Alices => a,
            Desktop::Bobs => b,
        };
        let opened = self.open(case.who, desktop, &token, viewer.origin, bearer.as_deref());
        let (got, client) = opened.await;
        self.viewer = client.map(|client| (case.case, client));
        got
    }

    /// The viewer WebSocket of `desktop` with `token`, sent by `who` from `origin`.
    pub(crate) async fn open(
        &self,
        who: Who,
        desktop: &str,
        token: &str,
        origin: Origin,
        bearer: Option<&str>,
    ) -> (String, Option<RfbClient<DuplexStream>>) {
        let path = format!("/desktops/{}/{desktop}/vnc?token={token}", self.s.ns);
        let mut with = Vec::new();
        if let Some(i) = who.index() {
            with.push(("cookie", self.cookies[i].as_str()));
        }
        if let Some(bearer) = bearer {
            with.push(("authorization", bearer));
        }
        match origin {
            Origin::Own => with.push(("origin", &self.origin)),
            Origin::Evil => with.push(("origin", EVIL)),
            Origin::Absent => {}
            Origin::CrossSite => with.push(("sec-fetch-site", "cross-site")),
        }
        wire::open(self.s, &path, &with).await
    }

    /// The connect token `token` stands for in `case`.
    async fn token(&mut self, case: &'static str, token: Token) -> String {
        match token {
            Token::Alices => self.kept(case).await,
            Token::Forged(part) => {
                let token = self.kept(case).await;
                let at = match part {
                    Part::Mac => token.find('.').unwrap() + 1,
                    Part::Body => 0,
                };
                flip(&token, at)
            }
            Token::Widened => {
                let (view, _) = self.grant(Who::Carol, case).await;
                let (body, tag) = view.split_once('.').unwrap();
                let json = String::from_utf8(URL_SAFE_NO_PAD.decode(body).unwrap()).unwrap();
                let widened = json.replace("\"view_only\":true", "\"view_only\":false");
                assert_ne!(
                    json, widened,
                    "case {case}: carol's grant is view-only: {json}"
                );
                format!("{}.{tag}", URL_SAFE_NO_PAD.encode(widened))
            }
            Token::Issued => {
                let grant: Value = serde_json::from_str(&self.last_body).unwrap_or_default();
                grant["token"].as_str().unwrap_or_default().to_owned()
            }
            Token::Expired => {
                let (token, expires) = self.expired.clone().expect("the Connect row ran");
                tokio::time::sleep_until(expires.into()).await;
                token
            }
        }
    }

    /// Alice's token of `case`: issued now if the case has none yet.
    async fn kept(&mut self, case: &'static str) -> String {
        match &self.kept {
            Some((of, token)) if *of == case => token.clone(),
            _ => {
                let (token, _) = self.grant(Who::Alice, case).await;
                self.kept = Some((case, token.clone()));
                token
            }
        }
    }

    /// Sends `raw` as `who`: the status code of the answer.
    async fn raw(&self, who: Who, raw: &Raw) -> String {
        let cookie = &self.cookies[who.index().expect("a logged-in user")];
        let mut with = Vec::new();
        let cookie = match raw.filler {
            Filler::None => cookie.clone(),
            Filler::Header(kib) => {
                with.push(("x-filler", "f".repeat(kib * 1024)));
                cookie.clone()
            }
            Filler::Cookie(kib) => format!("{cookie}; filler={}", "f".repeat(kib * 1024)),
        };
        with.push(("cookie", cookie));
        if let Origin::Own = raw.origin {
            with.push(("origin", self.origin.clone()));
        }
        let with: Vec<(&str, &str)> = with.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let body = match raw.form {
            true => format!("csrf={}", self.csrf(who)),
            false => String::new(),
        };
        wire::raw(self.s, raw.method, &self.fill(raw.path), &with, &body).await
    }
}

/// How many desktops of the test's namespace are assigned to `user`.
async fn owned(s: &Env, user: &str) -> usize {
    let list = s.desktops().list(&ListParams::default()).await.unwrap();
    let user = Some(user);
    list.iter()
        .filter(|d| d.spec.user.as_deref() == user)
        .count()
}

/// `token` with the base64 character at byte `at` changed: still well-formed, MAC wrong.
fn flip(token: &str, at: usize) -> String {
    let mut bytes = token.as_bytes().to_vec();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}
