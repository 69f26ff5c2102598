//! What a row of the table is: who asks, what request, and the answer expected.

/// One row of the table.
pub(crate) struct Case {
    /// The case of the threat model it belongs to ("-" for the Connect between them).
    pub(crate) case: &'static str,
    /// Whose session sends it (its cookie, its CSRF token).
    pub(crate) who: Who,
    /// The request, as the table prints it.
    pub(crate) name: &'static str,
    /// What is sent.
    pub(crate) ask: Ask,
    /// The answer, as the table prints it; `{ns}` stands for the namespace.
    pub(crate) expect: &'static str,
}

/// Who sends a request: one of the logged-in users, or a client without a cookie.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Who {
    /// In group engineering: pool eng.
    Alice,
    /// In group engineering too.
    Bob,
    /// In group helpdesk: shadows desktops of pool eng, view-only.
    Carol,
    /// In no group.
    Eve,
    /// No cookie at all.
    Nobody,
}

impl Who {
    /// Its place among the logged-in users; none for [`Who::Nobody`].
    pub(crate) fn index(self) -> Option<usize> {
        match self {
            Who::Alice => Some(0),
            Who::Bob => Some(1),
            Who::Carol => Some(2),
            Who::Eve => Some(3),
            Who::Nobody => None,
        }
    }

    /// Its user name.
    pub(crate) fn name(self) -> &'static str {
        ["alice", "bob", "carol", "eve"][self.index().expect("a logged-in user")]
    }
}

/// Where a request says it comes from: its Origin header, or the lack of one.
#[derive(Clone, Copy)]
pub(crate) enum Origin {
    /// The broker's own Origin.
    Own,
    /// Origin `https://evil.example`.
    Evil,
    /// No Origin.
    Absent,
    /// No Origin, and `Sec-Fetch-Site: cross-site`.
    CrossSite,
}

/// The CSRF proof a request carries.
#[derive(Clone, Copy)]
pub(crate) enum Csrf {
    /// None, and no body.
    None,
    /// A form without the `csrf` field.
    NoField,
    /// A form whose `csrf` field is this user's token.
    Field(Who),
    /// A form whose `csrf` field is as long as the asker's token, but wrong.
    Wrong,
    /// The `X-CSRF-Token` header with this user's token.
    Header(Who),
}

/// The Authorization header a request carries.
#[derive(Clone, Copy)]
pub(crate) enum Auth {
    /// None.
    None,
    /// This value.
    Value(&'static str),
    /// `Bearer` and an ID token the provider issued alice.
    AlicesIdToken,
}

/// What of an HTTP answer the row compares.
#[derive(Clone, Copy)]
pub(crate) enum Read {
    /// The status code: `404`.
    Status,
    /// The status and a field of the JSON body: `200 viewOnly=true`.
    Field(&'static str),
    /// The status and the Location: `303 /login?next=%2F`.
    Location,
}

/// An HTTP request through an ordinary client.
pub(crate) struct Http {
    /// `GET` or `POST`.
    pub(crate) method: &'static str,
    /// The path; `{ns}`, `{alice's}`, `{bob's}` and `{x}` (see [`Ask::Pair`]) are filled in.
    pub(crate) path: &'static str,
    pub(crate) origin: Origin,
    pub(crate) csrf: Csrf,
    pub(crate) auth: Auth,
    pub(crate) read: Read,
}

/// A GET of `path`, reading the status.
pub(crate) const fn get(path: &'static str) -> Http {
    Http {
        method: "GET",
        path,
        origin: Origin::Absent,
        csrf: Csrf::None,
        auth: Auth::None,
        read: Read::Status,
    }
}

/// A POST to `path` from `origin` with `csrf`, reading the status.
pub(crate) const fn post(path: &'static str, origin: Origin, csrf: Csrf) -> Http {
    Http {
        method: "POST",
        origin,
        csrf,
        ..get(path)
    }
}

impl Http {
    /// The same request with an Authorization header.
    pub(crate) const fn auth(self, auth: Auth) -> Self {
        Self { auth, ..self }
    }

    /// The same request, reading `read` of the answer.
    pub(crate) const fn read(self, read: Read) -> Self {
        Self { read, ..self }
    }
}

/// Whose desktop a viewer's path names.
#[derive(Clone, Copy)]
pub(crate) enum Desktop {
    Alices,
    Bobs,
}

/// Which half of a connect token a forgery changes.
#[derive(Clone, Copy)]
pub(crate) enum Part {
    /// The first base64 character of its MAC.
    Mac,
    /// The first base64 character of its body.
    Body,
}

/// The connect token a viewer presents.
#[derive(Clone, Copy)]
pub(crate) enum Token {
    /// Alice's for her desktop: issued at the case's first use of it, then the same one.
    Alices,
    /// [`Token::Alices`] with one character changed: still well-formed, its MAC wrong.
    Forged(Part),
    /// Carol's view-only grant for alice's desktop made full, its MAC kept.
    Widened,
    /// The token in the previous HTTP answer's JSON body.
    Issued,
    /// Alice's, issued right after Connect and presented 31 s after it, past its 30 s.
    Expired,
}

/// A viewer's WebSocket, with RFB spoken through it once it opens.
pub(crate) struct Viewer {
    /// Whose desktop's path it opens.
    pub(crate) desktop: Desktop,
    pub(crate) token: Token,
    pub(crate) origin: Origin,
    /// Whether alice's ID token goes along as a bearer.
    pub(crate) bearer: bool,
}

/// A viewer from `origin` on `desktop`'s path with `token`.
pub(crate) const fn viewer(desktop: Desktop, token: Token, origin: Origin) -> Ask {
    Ask::Viewer(Viewer {
        desktop,
        token,
        origin,
        bearer: false,
    })
}

/// What a raw request adds to make its head large.
#[derive(Clone, Copy)]
pub(crate) enum Filler {
    /// Nothing.
    None,
    /// An `X-Filler` header of this many KiB.
    Header(usize),
    /// This many KiB of cookie after the asker's own.
    Cookie(usize),
}

/// A request sent byte for byte over TLS, as no client would normalise it.
pub(crate) struct Raw {
    pub(crate) method: &'static str,
    /// The path; `{ns}` is filled in.
    pub(crate) path: &'static str,
    pub(crate) origin: Origin,
    /// Whether a form with the asker's CSRF token goes along.
    pub(crate) form: bool,
    pub(crate) filler: Filler,
}

/// A raw request.
pub(crate) const fn raw(
    method: &'static str,
    path: &'static str,
    origin: Origin,
    form: bool,
    filler: Filler,
) -> Ask {
    Ask::Raw(Raw {
        method,
        path,
        origin,
        form,
        filler,
    })
}

/// What a row sends, or looks at.
pub(crate) enum Ask {
    /// How many desktops of the namespace are the asker's.
    Owned,
    /// Alice and bob connect to pool eng: two desktops, which the later rows use.
    Connect,
    /// One HTTP request.
    Http(Http),
    /// The same request for each of `names` (as `{x}` in its path): both answers, and whether
    /// their bodies are identical (with each name masked in `pool <name> `, if `mask`).
    Pair {
        http: Http,
        names: [&'static str; 2],
        mask: bool,
    },
    /// A viewer.
    Viewer(Viewer),
    /// A raw request.
    Raw(Raw),
}
