//! The broker's authorization table: every way in that must be refused, as real HTTP and
//! WebSocket requests to a real broker in front of a real apiserver, OpenID provider and
//! desktops. Each is refused with the right status and, where a desktop is involved, with the
//! same answer whether or not the desktop exists. The table is written to stderr (past the
//! test harness's capture, and also when a case panics half-way); every row is asserted.
//!
//! The rows are [`CASES`], run in order by one loop; case 10's viewers, keys and clipboard
//! are a step of their own after it ([`shadowing`]).

mod cases;
mod report;
mod shadowing;
mod wire;
mod world;

use std::io::Write;
use std::time::Instant;

use cases::Desktop::{Alices, Bobs};
use cases::Who::{Alice, Bob, Carol, Eve, Nobody};
use cases::{Ask, Auth, Case, Csrf, Filler, Origin, Part, Read, Token, get, post, raw, viewer};
use report::Table;
use shadowing::shadowing;
use tests::brokerenv::builder;
use world::World;

/// Pool eng's Connect.
const CONNECT_ENG: &str = "/pools/{ns}/eng/connect";
/// Alice's desktop in the API.
const API_A: &str = "/api/desktops/{ns}/{alice's}";
/// The token endpoint of alice's desktop.
const TOKEN_A: &str = "/api/desktops/{ns}/{alice's}/token";
/// Alice's desktop and a missing one, for [`Ask::Pair`].
const THEIRS_AND_MISSING: [&str; 2] = ["{alice's}", "no-such-desktop"];
/// A pair that answers alike: both 404, the same body.
const BOTH_404: &str = "404 404, bodies identical";

/// Every row, in the order they run, by case of the threat model.
const CASES: &[Case] = &[
    // 5. Cross-site Connect, while alice has no desktop yet: nothing may be assigned.
    Case {
        case: "5",
        who: Alice,
        name: "alice's desktops before those",
        ask: Ask::Owned,
        expect: "0",
    },
    Case {
        case: "5",
        who: Alice,
        name: "alice POST connect eng: Origin evil.example, right csrf",
        ask: Ask::Http(post(CONNECT_ENG, Origin::Evil, Csrf::Field(Alice))),
        expect: "403",
    },
    Case {
        case: "5",
        who: Alice,
        name: "alice POST connect eng: same Origin, no csrf field",
        ask: Ask::Http(post(CONNECT_ENG, Origin::Own, Csrf::NoField)),
        expect: "403",
    },
    Case {
        case: "5",
        who: Alice,
        name: "alice POST connect eng: same Origin, wrong csrf",
        ask: Ask::Http(post(CONNECT_ENG, Origin::Own, Csrf::Wrong)),
        expect: "403",
    },
    Case {
        case: "5",
        who: Alice,
        name: "alice POST connect eng: same Origin, bob's csrf",
        ask: Ask::Http(post(CONNECT_ENG, Origin::Own, Csrf::Field(Bob))),
        expect: "403",
    },
    Case {
        case: "5",
        who: Alice,
        name: "alice POST connect eng: no Origin, Sec-Fetch-Site cross-site, right csrf",
        ask: Ask::Http(post(CONNECT_ENG, Origin::CrossSite, Csrf::Field(Alice))),
        expect: "403",
    },
    Case {
        case: "5",
        who: Alice,
        name: "alice's desktops after those",
        ask: Ask::Owned,
        expect: "0",
    },
    // The desktops: alice's and bob's (and a token of alice's, to be used once expired).
    Case {
        case: "-",
        who: Alice,
        name: "alice, bob connect to eng",
        ask: Ask::Connect,
        expect: "two desktops",
    },
    // 1. Someone else's desktop answers exactly as a missing one.
    Case {
        case: "1",
        who: Bob,
        name: "bob GET /desktops/ns/<alice's> and no-such-desktop",
        ask: Ask::Pair {
            http: get("/desktops/{ns}/{x}"),
            names: THEIRS_AND_MISSING,
            mask: false,
        },
        expect: BOTH_404,
    },
    Case {
        case: "1",
        who: Bob,
        name: "bob GET /api/desktops/ns/<alice's> and no-such-desktop",
        ask: Ask::Pair {
            http: get("/api/desktops/{ns}/{x}"),
            names: THEIRS_AND_MISSING,
            mask: false,
        },
        expect: BOTH_404,
    },
    Case {
        case: "1",
        who: Bob,
        name: "bob POST /api/desktops/ns/<alice's>/token and no-such-desktop's",
        ask: Ask::Pair {
            http: post(
                "/api/desktops/{ns}/{x}/token",
                Origin::Own,
                Csrf::Header(Bob),
            ),
            names: THEIRS_AND_MISSING,
            mask: false,
        },
        expect: BOTH_404,
    },
    Case {
        case: "1",
        who: Eve,
        name: "eve GET /desktops/ns/<alice's> and no-such-desktop",
        ask: Ask::Pair {
            http: get("/desktops/{ns}/{x}"),
            names: THEIRS_AND_MISSING,
            mask: false,
        },
        expect: BOTH_404,
    },
    Case {
        case: "1",
        who: Eve,
        name: "eve GET /api/desktops/ns/<alice's> and no-such-desktop",
        ask: Ask::Pair {
            http: get("/api/desktops/{ns}/{x}"),
            names: THEIRS_AND_MISSING,
            mask: false,
        },
        expect: BOTH_404,
    },
    Case {
        case: "1",
        who: Eve,
        name: "eve POST /api/desktops/ns/<alice's>/token and no-such-desktop's",
        ask: Ask::Pair {
            http: post(
                "/api/desktops/{ns}/{x}/token",
                Origin::Own,
                Csrf::Header(Eve),
            ),
            names: THEIRS_AND_MISSING,
            mask: false,
        },
        expect: BOTH_404,
    },
    // 2. Pools not granted, existing or not: the same 403.
    Case {
        case: "2",
        who: Eve,
        name: "eve (no group) POST connect eng",
        ask: Ask::Http(post(CONNECT_ENG, Origin::Own, Csrf::Field(Eve))),
        expect: "403",
    },
    Case {
        case: "2",
        who: Carol,
        name: "carol (helpdesk only) POST connect eng",
        ask: Ask::Http(post(CONNECT_ENG, Origin::Own, Csrf::Field(Carol))),
        expect: "403",
    },
    Case {
        case: "2",
        who: Alice,
        name: "alice POST connect secret and no-such-pool (bodies, name masked)",
        ask: Ask::Pair {
            http: post("/pools/{ns}/{x}/connect", Origin::Own, Csrf::Field(Alice)),
            names: ["secret", "no-such-pool"],
            mask: true,
        },
        expect: "403 403, bodies identical",
    },
    Case {
        case: "2",
        who: Alice,
        name: "alice's desktops after those",
        ask: Ask::Owned,
        expect: "1",
    },
    // 3. Forged and replayed tokens.
    Case {
        case: "3",
        who: Alice,
        name: "WS forged token: alice's, MAC's first character changed",
        ask: viewer(Alices, Token::Forged(Part::Mac), Origin::Own),
        expect: "403",
    },
    Case {
        case: "3",
        who: Alice,
        name: "WS forged token: alice's, body's first character changed",
        ask: viewer(Alices, Token::Forged(Part::Body), Origin::Own),
        expect: "403",
    },
    Case {
        case: "3",
        who: Carol,
        name: "WS forged token: carol's view-only grant made full, old MAC",
        ask: viewer(Alices, Token::Widened, Origin::Own),
        expect: "403",
    },
    Case {
        case: "3",
        who: Alice,
        name: "WS alice's token, first use (after the forgeries)",
        ask: viewer(Alices, Token::Alices, Origin::Own),
        expect: "101+RFB",
    },
    Case {
        case: "3",
        who: Alice,
        name: "WS alice's token again (replayed)",
        ask: viewer(Alices, Token::Alices, Origin::Own),
        expect: "403",
    },
    // 4. No cookie.
    Case {
        case: "4",
        who: Nobody,
        name: "no cookie: POST token endpoint",
        ask: Ask::Http(post(TOKEN_A, Origin::Own, Csrf::Header(Alice))),
        expect: "401",
    },
    Case {
        case: "4",
        who: Nobody,
        name: "no cookie: GET /api/desktops/ns/<alice's>",
        ask: Ask::Http(get(API_A)),
        expect: "401",
    },
    Case {
        case: "4",
        who: Nobody,
        name: "no cookie: WS with alice's fresh token",
        ask: viewer(Alices, Token::Alices, Origin::Own),
        expect: "401",
    },
    Case {
        case: "4",
        who: Nobody,
        name: "no cookie: GET /",
        ask: Ask::Http(get("/").read(Read::Location)),
        expect: "303 /login?next=%2F",
    },
    Case {
        case: "4",
        who: Nobody,
        name: "no cookie: GET /desktops/ns/<alice's>",
        ask: Ask::Http(get("/desktops/{ns}/{alice's}").read(Read::Location)),
        expect: "303 /login?next=%2Fdesktops%2F{ns}%2F<alice's>",
    },
    // 6. A foreign Origin is refused before the token is looked at; the token stays good.
    Case {
        case: "6",
        who: Alice,
        name: "WS Origin evil.example, alice's cookie, fresh token",
        ask: viewer(Alices, Token::Alices, Origin::Evil),
        expect: "403",
    },
    Case {
        case: "6",
        who: Alice,
        name: "the same token afterwards from the own Origin",
        ask: viewer(Alices, Token::Alices, Origin::Own),
        expect: "101+RFB",
    },
    // 7. A token for one desktop (or session) used for another.
    Case {
        case: "7",
        who: Alice,
        name: "WS alice's token for <alice's> on <bob's> path",
        ask: viewer(Bobs, Token::Alices, Origin::Own),
        expect: "403",
    },
    Case {
        case: "7",
        who: Bob,
        name: "WS alice's token for <alice's> with bob's cookie",
        ask: viewer(Alices, Token::Alices, Origin::Own),
        expect: "403",
    },
    // 8. Path tricks, sent raw (a URL library resolves %2e%2e before sending).
    Case {
        case: "8",
        who: Alice,
        name: "alice POST /pools/ns/..%2F..%2Fsecrets/connect",
        ask: raw(
            "POST",
            "/pools/{ns}/..%2F..%2Fsecrets/connect",
            Origin::Own,
            true,
            Filler::None,
        ),
        expect: "400",
    },
    Case {
        case: "8",
        who: Alice,
        name: "alice POST /pools/ns/%2e%2e/connect",
        ask: raw(
            "POST",
            "/pools/{ns}/%2e%2e/connect",
            Origin::Own,
            true,
            Filler::None,
        ),
        expect: "400",
    },
    Case {
        case: "8",
        who: Alice,
        name: "alice GET /desktops/ns/..%2Fkube-system%2Fx",
        ask: raw(
            "GET",
            "/desktops/{ns}/..%2Fkube-system%2Fx",
            Origin::Own,
            false,
            Filler::None,
        ),
        expect: "400",
    },
    Case {
        case: "8",
        who: Alice,
        name: "alice GET /api/desktops/ns/..%2Fkube-system%2Fx",
        ask: raw(
            "GET",
            "/api/desktops/{ns}/..%2Fkube-system%2Fx",
            Origin::Own,
            false,
            Filler::None,
        ),
        expect: "400",
    },
    // 9. Request heads over 32 KiB.
    Case {
        case: "9",
        who: Alice,
        name: "GET / with a 64 KiB X-Filler header",
        ask: raw("GET", "/", Origin::Absent, false, Filler::Header(64)),
        expect: "431",
    },
    Case {
        case: "9",
        who: Alice,
        name: "GET / with a 64 KiB cookie",
        ask: raw("GET", "/", Origin::Absent, false, Filler::Cookie(64)),
        expect: "431",
    },
    Case {
        case: "9",
        who: Alice,
        name: "GET / with a 16 KiB X-Filler (under the bound)",
        ask: raw("GET", "/", Origin::Absent, false, Filler::Header(16)),
        expect: "200",
    },
    // 10. Shadowing: carol's view of alice's desktop (its viewers, keys and clipboard follow
    // the table).
    Case {
        case: "10",
        who: Carol,
        name: "carol GET /api/desktops/ns/<alice's>",
        ask: Ask::Http(get(API_A).read(Read::Field("viewOnly"))),
        expect: "200 viewOnly=true",
    },
    // 11. Bearer tokens: reviewed by the apiserver; no cookie and no CSRF token needed.
    Case {
        case: "11",
        who: Nobody,
        name: "GET /api/desktops/ns/<alice's>, Bearer not-a-token",
        ask: Ask::Http(get(API_A).auth(Auth::Value("Bearer not-a-token"))),
        expect: "401",
    },
    Case {
        case: "11",
        who: Alice,
        name: "GET /api/desktops/ns/<alice's>, Bearer not-a-token and alice's valid cookie",
        ask: Ask::Http(get(API_A).auth(Auth::Value("Bearer not-a-token"))),
        expect: "401",
    },
    Case {
        case: "11",
        who: Nobody,
        name: "GET /api/desktops/ns/<alice's>, Basic YWxpY2U6YWxpY2UtcHc=",
        ask: Ask::Http(get(API_A).auth(Auth::Value("Basic YWxpY2U6YWxpY2UtcHc="))),
        expect: "401",
    },
    Case {
        case: "11",
        who: Nobody,
        name: "GET /api/desktops/ns/<alice's>, alice's ID token",
        ask: Ask::Http(
            get(API_A)
                .auth(Auth::AlicesIdToken)
                .read(Read::Field("user")),
        ),
        expect: "200 user=\"alice\"",
    },
    Case {
        case: "11",
        who: Nobody,
        name: "GET /api/desktops/ns/<bob's>, alice's ID token",
        ask: Ask::Http(get("/api/desktops/{ns}/{bob's}").auth(Auth::AlicesIdToken)),
        expect: "404",
    },
    Case {
        case: "11",
        who: Nobody,
        name: "POST token endpoint, alice's ID token, no CSRF",
        ask: Ask::Http(post(TOKEN_A, Origin::Absent, Csrf::None).auth(Auth::AlicesIdToken)),
        expect: "200",
    },
    Case {
        case: "11",
        who: Nobody,
        name: "WS with that token and the bearer, no cookie",
        ask: Ask::Viewer(cases::Viewer {
            desktop: Alices,
            token: Token::Issued,
            origin: Origin::Own,
            bearer: true,
        }),
        expect: "101+RFB",
    },
    // 3. (expired) The token issued right after Connect, now past its 30 s.
    Case {
        case: "3",
        who: Alice,
        name: "WS alice's unused token, 31 s after issue (expired)",
        ask: viewer(Alices, Token::Expired, Origin::Own),
        expect: "403",
    },
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_refusal_has_the_right_status_and_leaks_nothing() {
    let started = Instant::now();
    let Some(s) = builder("broker-auth", 2).start().await else {
        return;
    };
    let mut w = World::login(&s).await;
    let mut t = Table::default();
    for case in CASES {
        t.case = case.case;
        let got = w.ask(case).await;
        t.row(case.name, w.fill(case.expect), got);
    }
    shadowing(&w, &mut t).await;

    let wall = started.elapsed().as_secs_f64();
    let _ = writeln!(std::io::stderr(), "broker_auth wall time: {wall:.1} s");
    t.finish();
}
