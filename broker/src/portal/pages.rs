//! The portal's HTML: small, server-rendered pages with no framework, labelled controls and
//! plain links and forms, so they work with a keyboard and a screen reader.

use std::fmt::Write;

/// Escapes text for HTML content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A desktop row on the portal.
#[derive(Debug, Clone)]
pub struct DesktopRow {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Phase, as shown.
    pub phase: String,
    /// Whether its user may give it back: a Floating pool's desktop.
    pub releasable: bool,
}

/// A pool row on the portal.
#[derive(Debug, Clone)]
pub struct PoolRow {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Desktops free now.
    pub free: usize,
    /// Floating or Dedicated.
    pub policy: String,
}

/// Who is logged in, for the header.
pub struct Viewer<'a> {
    /// User name.
    pub user: &'a str,
    /// CSRF token for forms.
    pub csrf: &'a str,
}

fn layout(title: &str, viewer: Option<&Viewer>, extra_head: &str, body: &str) -> String {
    let mut page = String::new();
    let _ = write!(
        page,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{} · Verdant</title><link rel=\"icon\" href=\"data:,\"><link rel=\"stylesheet\" href=\"/static/portal.css\">{extra_head}</head><body>\
<a class=\"skip\" href=\"#main\">Skip to content</a><header><a class=\"brand\" href=\"/\">Verdant</a>",
        esc(title)
    );
    if let Some(v) = viewer {
        let _ = write!(
            page,
            "<form method=\"post\" action=\"/logout\" class=\"logout\"><span>Signed in as <strong>{}</strong></span>\
<input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\">Log out</button></form>",
            esc(v.user),
            esc(v.csrf)
        );
    }
    let _ = writeln!(
        page,
        "</header><main id=\"main\">{body}</main></body></html>"
    );
    page
}

/// The portal: the user's desktops and the pools they may use.
pub fn portal(viewer: &Viewer, desktops: &[DesktopRow], pools: &[PoolRow]) -> String {
    let mut body = String::from("<h1>Your desktops</h1>");
    if desktops.is_empty() {
        body.push_str(
            "<p id=\"no-desktops\">You have no desktop yet. Connect to a pool below.</p>",
        );
    } else {
        body.push_str(
            "<table id=\"desktops\"><caption class=\"sr\">Your desktops</caption><thead><tr>\
<th scope=\"col\">Desktop</th><th scope=\"col\">Namespace</th><th scope=\"col\">State</th>\
<th scope=\"col\"><span class=\"sr\">Actions</span></th></tr></thead><tbody>",
        );
        for d in desktops {
            let href = format!("/desktops/{}/{}", esc(&d.namespace), esc(&d.name));
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td><span class=\"phase phase-{}\">{}</span></td>\
<td><a class=\"button\" href=\"{href}\">Open<span class=\"sr\"> {}</span></a>",
                esc(&d.name),
                esc(&d.namespace),
                esc(&d.phase.to_lowercase()),
                esc(&d.phase),
                esc(&d.name),
            );
            if d.releasable {
                let _ = write!(
                    body,
                    " <form method=\"post\" action=\"{href}/release\" class=\"inline\">\
<input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\">Release<span class=\"sr\"> {}</span></button></form>",
                    esc(viewer.csrf),
                    esc(&d.name)
                );
            }
            body.push_str("</td></tr>");
        }
        body.push_str("</tbody></table>");
    }
    body.push_str("<h2>Pools</h2>");
    if pools.is_empty() {
        body.push_str("<p id=\"no-pools\">No pool is granted to you. Ask your administrator for the <code>use</code> verb on a DesktopPool.</p>");
    } else {
        body.push_str("<ul id=\"pools\" class=\"cards\">");
        for p in pools {
            let _ = write!(
                body,
                "<li><h3>{}</h3><p>{} · {} · {} free</p>\
<form method=\"post\" action=\"/pools/{}/{}/connect\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
<button type=\"submit\">Connect<span class=\"sr\"> to {}</span></button></form></li>",
                esc(&p.name),
                esc(&p.namespace),
                esc(&p.policy),
                p.free,
                esc(&p.namespace),
                esc(&p.name),
                esc(viewer.csrf),
                esc(&p.name),
            );
        }
        body.push_str("</ul>");
    }
    layout("Desktops", Some(viewer), "", &body)
}

/// The desktop page: noVNC and its toolbar.
pub fn desktop(viewer: &Viewer, namespace: &str, name: &str, view_only: bool) -> String {
    let head = format!(
        "<meta name=\"csrf-token\" content=\"{}\"><script type=\"module\" src=\"/static/desktop.js\"></script>",
        esc(viewer.csrf)
    );
    let body = format!(
        "<h1 class=\"sr\">Desktop {name}</h1>\
<div class=\"toolbar\" role=\"toolbar\" aria-label=\"Desktop controls\">\
<span id=\"status\" role=\"status\" aria-live=\"polite\">Connecting…</span>{shadow}\
<button type=\"button\" id=\"fullscreen\">Full screen</button>\
<button type=\"button\" id=\"ctrl-alt-del\"{disabled}>Ctrl+Alt+Del</button>\
<button type=\"button\" id=\"disconnect\">Disconnect</button>\
<button type=\"button\" id=\"reconnect\" hidden>Reconnect</button>\
<a class=\"button\" href=\"/\">Back to desktops</a></div>\
<details class=\"clipboard\"><summary>Clipboard</summary>\
<label for=\"clipboard-text\">Text to send to the desktop, or last copied there</label>\
<textarea id=\"clipboard-text\" rows=\"3\"></textarea>\
<button type=\"button\" id=\"clipboard-send\"{disabled}>Send to desktop</button></details>\
<div id=\"screen\" class=\"screen\" data-namespace=\"{ns}\" data-name=\"{name}\" data-view-only=\"{view_only}\" \
aria-label=\"Remote desktop {name}\"></div>",
        name = esc(name),
        ns = esc(namespace),
        shadow = if view_only {
            " <strong class=\"badge\">View only</strong>"
        } else {
            ""
        },
        disabled = if view_only { " disabled" } else { "" },
    );
    layout(&format!("Desktop {name}"), Some(viewer), &head, &body)
}

/// The page of a desktop that is not ready yet: its phase, and a progress bar that follows
/// it until Ready (then the page reloads into the viewer).
pub fn starting(viewer: &Viewer, namespace: &str, name: &str, phase: &str, step: u32) -> String {
    let head = "<script type=\"module\" src=\"/static/starting.js\"></script>";
    let body = format!(
        "<h1>Your desktop is starting</h1>\
<p>Desktop <strong>{name}</strong> in {ns}: <span id=\"phase\" role=\"status\" aria-live=\"polite\">{phase}</span></p>\
<progress id=\"progress\" max=\"4\" value=\"{step}\" aria-label=\"Start progress\" \
data-namespace=\"{ns}\" data-name=\"{name}\">{step} of 4</progress>\
<p>This page opens the desktop as soon as it is ready.</p>",
        name = esc(name),
        ns = esc(namespace),
        phase = esc(phase),
    );
    layout("Starting", Some(viewer), head, &body)
}

/// A page with a heading and a sentence (errors, "no desktop free", "logged out").
pub fn message(
    viewer: Option<&Viewer>,
    title: &str,
    text: &str,
    link: Option<(&str, &str)>,
) -> String {
    let mut body = format!("<h1>{}</h1><p id=\"message\">{}</p>", esc(title), esc(text));
    if let Some((href, label)) = link {
        let _ = write!(
            body,
            "<p><a class=\"button\" href=\"{}\">{}</a></p>",
            esc(href),
            esc(label)
        );
    }
    layout(title, viewer, "", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_text_is_escaped_everywhere() {
        let viewer = Viewer {
            user: "<script>alert(1)</script>",
            csrf: "\"><x",
        };
        let page = portal(
            &viewer,
            &[DesktopRow {
                namespace: "ns".into(),
                name: "d\"1".into(),
                phase: "Ready".into(),
                releasable: true,
            }],
            &[],
        );
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(!page.contains("\"><x"), "{page}");
        assert!(page.contains("&lt;script&gt;"));
        assert!(
            page.contains("/release"),
            "a Floating desktop can be given back"
        );
        let kept = DesktopRow {
            namespace: "ns".into(),
            name: "kept".into(),
            phase: "Ready".into(),
            releasable: false,
        };
        let page = portal(&viewer, &[kept], &[]);
        assert!(
            !page.contains("/release"),
            "a Dedicated desktop has no Release"
        );
        let page = message(None, "a<b", "c&d", Some(("/x\"y", "go")));
        assert!(page.contains("a&lt;b") && page.contains("c&amp;d") && page.contains("/x&quot;y"));
    }

    #[test]
    fn controls_are_labelled() {
        let viewer = Viewer {
            user: "alice",
            csrf: "t",
        };
        let page = desktop(&viewer, "ns", "d1", true);
        assert!(page.contains("aria-label=\"Desktop controls\""));
        assert!(page.contains("<label for=\"clipboard-text\">"));
        assert!(page.contains("View only"));
        assert!(page.contains("id=\"ctrl-alt-del\" disabled"));
    }
}
