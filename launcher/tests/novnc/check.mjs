// Opens the noVNC page in headless Chromium, waits for the desktop, prints the RRGGBB of each
// "x,y" point and saves a screenshot. Usage: node check.mjs URL SCREENSHOT x,y...
// With PASTE set, then pastes that text into noVNC as a user would; with EXPECT_CLIPBOARD set,
// then waits for the server to hand noVNC that clipboard text and prints it. With THEN_WAIT
// set to "x,y RRGGBB" pairs joined by ";", then prints "ready", waits until every one of those
// pixels has that colour (the caller changes the desktop when it reads "ready"; a change the
// server caught half-drawn arrives in two updates) and prints the points again.
import { chromium } from "playwright-core";

const [url, screenshot, ...points] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
try {
  const page = await browser.newPage({ viewport: { width: 800, height: 600 } });
  // What the page could not load, for the failure message (stderr; stdout is the caller's).
  page.on("requestfailed", (r) => console.error(`request failed: ${r.url()}: ${r.failure()?.errorText}`));
  page.on("pageerror", (e) => console.error(`page error: ${e}`));
  // The page and noVNC's modules come from websockify's one-thread web server, which on a
  // loaded machine can drop a request; the page's script then never runs (verdantState stays
  // unset). That is the test's web server failing, not the VNC server under test: the page is
  // loaded again, once, saying so.
  for (let attempt = 1; ; attempt++) {
    await page.goto(url);
    const ran = await page.waitForFunction(() => window.verdantState !== undefined, null, { timeout: 30000 })
      .then(() => true, () => false);
    if (ran) break;
    if (attempt === 2) throw new Error("the page's script did not run twice (its modules did not load)");
    console.error("the page's script did not run (its modules did not load): loading it again");
  }
  await page.waitForFunction(() => window.verdantState === "connected", null, { timeout: 30000 })
    .catch(async (e) => { throw new Error(`not connected: ${await page.evaluate(() => window.verdantState)}: ${e}`); });
  // The first frame is drawn once the top panel is no longer black.
  await page.waitForFunction(() => window.verdantPixel(10, 10) !== "000000", null, { timeout: 30000 });
  for (const point of points) {
    const [x, y] = point.split(",").map(Number);
    console.log(`${x},${y} ${await page.evaluate(([x, y]) => window.verdantPixel(x, y), [x, y])}`);
  }
  await page.screenshot({ path: screenshot });
  if (process.env.PASTE) {
    await page.evaluate((text) => window.verdantPaste(text), process.env.PASTE);
    console.log("pasted");
  }
  if (process.env.EXPECT_CLIPBOARD) {
    const want = process.env.EXPECT_CLIPBOARD;
    await page.waitForFunction((want) => window.verdantClipboard === want, want, { timeout: 30000 })
      .catch(async (e) => { throw new Error(`clipboard is ${JSON.stringify(await page.evaluate(() => window.verdantClipboard))}: ${e}`); });
    console.log(`clipboard ${await page.evaluate(() => window.verdantClipboard)}`);
  }
  if (process.env.THEN_WAIT) {
    const wanted = process.env.THEN_WAIT.split(";").map((pair) => {
      const [at, colour] = pair.split(" ");
      const [x, y] = at.split(",").map(Number);
      return [x, y, colour];
    });
    console.log("ready");
    await page.waitForFunction((wanted) => wanted.every(([x, y, colour]) => window.verdantPixel(x, y) === colour), wanted, { timeout: 30000 })
      .catch(async (e) => {
        const seen = await page.evaluate((wanted) => wanted.map(([x, y, colour]) => `${x},${y} ${window.verdantPixel(x, y)} (want ${colour})`), wanted);
        throw new Error(`${seen.join("; ")}: ${e}`);
      });
    for (const point of points) {
      const [x, y] = point.split(",").map(Number);
      console.log(`${x},${y} ${await page.evaluate(([x, y]) => window.verdantPixel(x, y), [x, y])}`);
    }
  }
} finally {
  await browser.close();
}
