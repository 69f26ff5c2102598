// Drives the portal in headless Chromium as a user would, for tests/tests/broker_browser.rs:
// log in at the OpenID provider's form, Connect to a pool, use the desktop in noVNC (pixels,
// typing, clipboard both ways, disconnect), reconnect, release, connect again, log out.
//
// It prints one line per step ("step <name> <detail>") and, where the test must act or check
// something outside the browser, waits for a line on stdin. Usage:
//   BROKER_URL=... USER=... PASSWORD=... POOL=... NAMESPACE=... SHOTS=<dir> node portal.mjs
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const [base, user, password, pool, namespace, shots] =
  ["BROKER_URL", "USER", "PASSWORD", "POOL", "NAMESPACE", "SHOTS"].map(env);
const input = createInterface({ input: process.stdin });
const lines = input[Symbol.asyncIterator]();
const waitFor = async (word) => {
  const { value, done } = await lines.next();
  if (done || value.trim() !== word) throw new Error(`expected "${word}" from the test, got ${JSON.stringify(value)}`);
};
const step = (name, detail = "") => console.log(`step ${name} ${detail}`.trim());

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1400, height: 1000 } });
const page = await context.newPage();
const problems = [];
// While a desktop restarts on purpose, the broker answers the page's reconnects with 503.
let restarting = false;
// Failed requests, by URL (the console's "Failed to load resource" names none); favicons of
// the provider's pages are not the portal's business.
page.on("response", (r) => {
  if (restarting && r.status() === 503) return;
  if (r.status() >= 400 && !r.url().endsWith("/favicon.ico")) problems.push(`${r.status()} ${r.url()}`);
});
page.on("console", (m) => {
  // noVNC logs each refused reconnect while a desktop restarts on purpose.
  if (restarting) return;
  if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) problems.push(`console: ${m.text()}`);
});
page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));

// Waits for the desktop page's viewer to connect; a failure says which page the browser is
// on and what it shows (a starting page names the desktop's phase), with a screenshot.
const connected = async () => {
  await page.waitForFunction(() => window.verdantState === "connected", null, { timeout: 60000 })
    .catch(async (e) => {
      const state = await page.evaluate(() => window.verdantState);
      const shown = (await page.evaluate(() => document.body.innerText)).slice(0, 400);
      await page.screenshot({ path: `${shots}/not-connected.png` }).catch(() => {});
      throw new Error(`not connected (state ${state}) at ${page.url()}, showing: ${JSON.stringify(shown)}: ${e}`);
    });
};
const pixel = (x, y) => page.evaluate(([x, y]) => window.verdantPixel(x, y), [x, y]);
const waitPixel = async (x, y, colour) => {
  await page.waitForFunction(([x, y, c]) => { try { return window.verdantPixel(x, y) === c; } catch { return false; } },
    [x, y, colour], { timeout: 60000 })
    .catch(async (e) => { throw new Error(`pixel ${x},${y} is ${await pixel(x, y).catch(() => "?")}, not ${colour}: ${e}`); });
};
const desktopName = () => new URL(page.url()).pathname.split("/")[3];
const connectToPool = async () => {
  await page.getByRole("button", { name: `Connect to ${pool}` }).click();
  await page.waitForURL(new RegExp(`/desktops/${namespace}/`), { timeout: 30000 });
  return desktopName();
};

try {
  // Log in: the portal sends us to the provider's form, which sends us back.
  await page.goto(base);
  await page.getByLabel("Username:").fill(user);
  await page.getByLabel("Password:").fill(password);
  await page.getByRole("button", { name: "Login" }).click();
  await page.getByText(`Signed in as ${user}`).waitFor({ timeout: 30000 });
  await page.screenshot({ path: `${shots}/portal-first.png` });
  step("portal", new URL(page.url()).pathname);

  // Connect, and the desktop in noVNC: the demo's top panel, then a typed "a" (make code
  // 0x1c) drawn as a block at 100..116 in its window.
  const first = await connectToPool();
  step("desktop", first);
  await connected();
  await waitPixel(10, 10, "202020");
  await page.locator("#screen canvas").click({ position: { x: 640, y: 400 } });
  await page.keyboard.press("a");
  await waitPixel(108, 128, "1c3854");
  if (await page.getByRole("button", { name: "Reconnect" }).isVisible()) throw new Error("Reconnect shows while connected");
  await page.screenshot({ path: `${shots}/desktop.png` });
  step("typed");

  // Clipboard, browser to desktop: the test reads it with a second viewer.
  await page.locator("details.clipboard summary").click();
  await page.getByLabel("Text to send to the desktop, or last copied there").fill("from the browser");
  await page.getByRole("button", { name: "Send to desktop" }).click();
  step("pasted");
  await waitFor("checked");
  // Clipboard, desktop to browser: the test's viewer copies text.
  step("expect-clipboard");
  await page.waitForFunction(() => window.verdantClipboard === "from the desktop", null, { timeout: 30000 })
    .catch(async (e) => { throw new Error(`clipboard is ${JSON.stringify(await page.evaluate(() => window.verdantClipboard))}: ${e}`); });
  step("clipboard", await page.getByLabel("Text to send to the desktop, or last copied there").inputValue());

  await page.getByRole("button", { name: "Disconnect" }).click();
  await page.waitForFunction(() => window.verdantState === "disconnected", null, { timeout: 30000 });
  step("disconnected");
  await waitFor("checked");

  // Within the disconnect timeout, Connect returns the same desktop.
  await page.goto(base);
  const again = await connectToPool();
  await connected();
  step("reconnected", again);
  await waitFor("checked");

  // Release it (Floating: it is reset), then Connect gives a fresh one.
  await page.goto(base);
  await page.screenshot({ path: `${shots}/portal.png` });
  await page.getByRole("button", { name: `Release ${again}` }).click();
  await page.waitForURL(`${base.replace(/\/$/, "")}/`, { timeout: 30000 });
  step("released");
  await waitFor("ready");
  const fresh = await connectToPool();
  await connected();
  await waitPixel(10, 10, "202020");
  step("fresh", fresh);
  await waitFor("checked");

  // Ctrl+Alt+Del reaches the desktop: the demo guest powers off on it (the test checks the
  // operator's event), the operator starts it again, and the page reconnects by itself.
  restarting = true;
  await page.getByRole("button", { name: "Ctrl+Alt+Del" }).click();
  step("ctrl-alt-del", fresh);
  await waitFor("checked");
  await connected();
  await waitPixel(10, 10, "202020");
  restarting = false;
  step("restarted");

  // Log out: the session is gone, and the portal asks for a login again.
  await page.goto(base);
  await page.getByRole("button", { name: "Log out" }).click();
  await page.getByText("You are logged out").waitFor({ timeout: 30000 });
  await page.goto(base);
  await page.getByLabel("Username:").waitFor({ timeout: 30000 });
  step("logged-out");
  if (problems.length) step("problems", JSON.stringify(problems));
} finally {
  await browser.close();
  // stdin stays open (the test holds it), which would keep Node running.
  input.close();
}
process.exit(0);
