// The desktop page: noVNC over the broker's WebSocket, with one-time connect tokens, a
// toolbar (full screen, Ctrl+Alt+Del, clipboard, disconnect) and automatic reconnection when
// the connection drops (a broker restart, a network blip) until the user disconnects.
import RFB from "/novnc/core/rfb.js";

const screen = document.getElementById("screen");
const { namespace, name } = screen.dataset;
const viewOnly = screen.dataset.viewOnly === "true";
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const status = document.getElementById("status");
const clip = document.getElementById("clipboard-text");
const reconnectButton = document.getElementById("reconnect");
let rfb = null;
let userDisconnected = false;
let attempts = 0;

// For people, and for the end-to-end test that drives this page.
function setState(state, text) {
  window.verdantState = state;
  document.body.dataset.state = state;
  status.textContent = text;
}
window.verdantClipboard = null;

async function connectToken() {
  const r = await fetch(`/api/desktops/${namespace}/${name}/token`, {
    method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrf },
  });
  if (r.status === 401) {
    location.href = `/login?next=${encodeURIComponent(location.pathname)}`;
    throw new Error("the session ended; logging in again");
  }
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.message || `the broker answered ${r.status}`);
  return body;
}

async function connect() {
  userDisconnected = false;
  reconnectButton.hidden = true;
  setState("connecting", attempts ? `Reconnecting (attempt ${attempts})…` : "Connecting…");
  let grant;
  try {
    grant = await connectToken();
  } catch (e) {
    return retry(String(e.message || e));
  }
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  rfb = new RFB(screen, `${scheme}//${location.host}${grant.path}`, { shared: true });
  rfb.viewOnly = viewOnly;
  rfb.scaleViewport = true;
  rfb.focusOnClick = true;
  rfb.addEventListener("connect", () => {
    attempts = 0;
    window.verdantConnects = (window.verdantConnects || 0) + 1;
    setState("connected", viewOnly ? "Connected (view only)" : "Connected");
    rfb.focus();
  });
  rfb.addEventListener("disconnect", (e) => {
    rfb = null;
    if (userDisconnected) {
      setState("disconnected", "Disconnected");
      reconnectButton.hidden = false;
    } else {
      retry(e.detail.clean ? "the desktop closed the connection" : "the connection dropped");
    }
  });
  rfb.addEventListener("clipboard", (e) => {
    clip.value = e.detail.text;
    window.verdantClipboard = e.detail.text;
  });
}

function retry(why) {
  attempts += 1;
  if (attempts > 20) {
    setState("failed", `Cannot connect: ${why}`);
    reconnectButton.hidden = false;
    return;
  }
  const delay = Math.min(500 * attempts, 5000);
  setState("reconnecting", `Reconnecting in ${Math.round(delay / 1000)} s: ${why}`);
  setTimeout(connect, delay);
}

document.getElementById("fullscreen").addEventListener("click", () => screen.requestFullscreen?.());
document.getElementById("ctrl-alt-del").addEventListener("click", () => rfb?.sendCtrlAltDel());
document.getElementById("clipboard-send").addEventListener("click", () => rfb?.clipboardPasteFrom(clip.value));
document.getElementById("disconnect").addEventListener("click", () => {
  userDisconnected = true;
  if (rfb) rfb.disconnect(); else setState("disconnected", "Disconnected");
});
reconnectButton.addEventListener("click", () => { attempts = 0; connect(); });

// The colour at (x, y) of the remote screen as RRGGBB, for tests.
window.verdantPixel = (x, y) => {
  const canvas = screen.querySelector("canvas");
  const d = canvas.getContext("2d").getImageData(x, y, 1, 1).data;
  return [d[0], d[1], d[2]].map((v) => v.toString(16).padStart(2, "0")).join("");
};
connect();
