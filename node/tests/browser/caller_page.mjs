// Alice at her node's web page, in Debian's chromium driven by playwright-core.
//
// Run by node/tests/browser.rs, which starts the nodes, the gateways and sipp, and passes:
//   INTERLINK_URL        the page, e.g. http://127.0.0.1:PORT/
//   INTERLINK_ARTIFACTS  where screenshots go
//   INTERLINK_EXPECT     JSON: destination, uncovered, order (names, cheapest first),
//                        echo and sip ({name, peer_id}) gateways
// Prints one JSON object with what it saw on stdout and exits 0, or prints why it failed
// on stderr (with a screenshot) and exits 1. Every wait has a deadline.

import { chromium } from 'playwright-core';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const url = process.env.INTERLINK_URL;
const artifacts = process.env.INTERLINK_ARTIFACTS;
const expect = JSON.parse(process.env.INTERLINK_EXPECT ?? '{}');
const origin = new URL(url).origin;
const STEP_MS = 20_000;

const result = { screenshots: [], outside_requests: [], console_errors: [], failed_responses: [] };

function check(condition, message) {
  if (!condition) throw new Error(message);
}

// Polls `probe` (run in Node, may use the page) until it returns a truthy value.
async function until(what, probe, ms = STEP_MS) {
  const giveUp = Date.now() + ms;
  let last;
  for (;;) {
    last = await probe();
    if (last) return last;
    if (Date.now() > giveUp) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function api(path, init) {
  const response = await fetch(new URL(path, origin), init);
  return { status: response.status, body: await response.json() };
}

async function shot(page, name) {
  const path = join(artifacts, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  result.screenshots.push(path);
}

// Waits until the page's call has media both ways with audible audio.
async function talking(page, what) {
  return until(`${what}: audio both ways`, async () => {
    const call = await page.evaluate(() => window.interlink.call());
    return call && call.packetsReceived > 25 && call.totalAudioEnergy > 0 && call.packetsSent > 25
      ? call
      : null;
  });
}

async function callListEmpty() {
  return until('an empty call list on the node', async () => {
    const { body } = await api('/api/calls');
    return body.calls.length === 0 ? body : null;
  });
}

// Hangs up with the button and waits until the page says the call ended.
async function hangUp(page) {
  const clicked = Date.now();
  await page.getByRole('button', { name: 'Hang up' }).click();
  await page.getByRole('button', { name: 'New call' }).waitFor({ state: 'visible', timeout: STEP_MS });
  const state = await page.locator('#call-state').textContent();
  const log = await page.locator('#call-log').innerText();
  const call = await page.evaluate(() => window.interlink.call());
  return { state, log, call, hang_up_ms: Date.now() - clicked };
}

// Lists the services for `number` with the keyboard: type, Enter.
async function list(page, number) {
  const field = page.getByLabel('Number to call');
  await field.fill(number);
  await field.press('Enter');
}

const profile = mkdtempSync(join(tmpdir(), 'interlink-chromium-'));
mkdirSync(artifacts, { recursive: true });
const context = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu',
    '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
    '--allow-loopback-in-peer-connection', '--autoplay-policy=no-user-gesture-required',
    // Nothing but the page's own origin: the machine has no other network.
    '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync',
  ],
  viewport: { width: 1280, height: 900 },
});
const page = context.pages()[0] ?? (await context.newPage());
page.on('request', (request) => {
  const requested = request.url();
  if (!requested.startsWith(`${origin}/`) && !requested.startsWith('data:')) {
    result.outside_requests.push(requested);
  }
});
page.on('response', (response) => {
  if (response.status() >= 400) {
    result.failed_responses.push(`${response.status()} ${response.request().method()} ${response.url().slice(origin.length)}`);
  }
});
page.on('console', (message) => {
  // The browser logs every response over 400 this way; those are in failed_responses.
  if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) {
    result.console_errors.push(message.text());
  }
});
page.on('pageerror', (error) => result.console_errors.push(error.message));

try {
  await page.goto(url);
  await page.getByText(/Your node 12D3/).waitFor({ timeout: STEP_MS });

  // A number no service covers: a clear message, and no call.
  await list(page, expect.uncovered);
  const message = page.getByRole('alert');
  await message.waitFor({ state: 'visible', timeout: STEP_MS });
  result.not_covered = {
    message: await message.textContent(),
    choice_hidden: await page.locator('#choice').isHidden(),
    call_hidden: await page.locator('#call').isHidden(),
    calls: (await api('/api/calls')).body.calls.length,
  };
  await shot(page, 'not-covered');

  // The services for Bob's number, ranked by the lowest price.
  await page.getByLabel('Rank services by').selectOption('cheapest');
  await list(page, expect.destination);
  await page.locator('#choice').waitFor({ state: 'visible', timeout: STEP_MS });
  result.message_cleared = await message.isHidden();
  const rows = page.locator('#gateways tbody tr');
  const names = await rows.locator('label').allTextContents();
  const prices = await rows.locator('td.price').allTextContents();
  result.listed = {
    names,
    prices,
    peer_ids: await rows.evaluateAll((trs) => trs.map((tr) => tr.dataset.peerId)),
    recommendation: await page.locator('#recommendation').textContent(),
    badge_row: await rows.filter({ has: page.getByText('Recommended', { exact: true }) })
      .locator('label').allTextContents(),
    accept: await page.locator('#accept').textContent(),
    accept_focused: await page.locator('#accept').evaluate((b) => b === document.activeElement),
    row_texts: await rows.allInnerTexts(),
    api_order: (await api(`/api/gateways?destination=${encodeURIComponent(expect.destination)}&policy=cheapest`))
      .body.gateways.map((g) => g.name),
  };
  await shot(page, 'recommendations');

  // Alice accepts the recommendation from the keyboard: the echo gateway.
  check(result.listed.names[0] === expect.echo.name, `the echo gateway is not first: ${names}`);
  let started = Date.now();
  await page.keyboard.press('Enter');
  await page.getByText('Connected', { exact: true }).waitFor({ timeout: STEP_MS });
  const echoConnected = Date.now() - started;
  const echoMedia = await talking(page, 'echo call');
  await until('the timer to run', async () => (await page.locator('#call-timer').textContent()) !== '0:00');
  const echoDuring = {
    media: echoMedia,
    click_to_connected_ms: echoConnected,
    gateway: await page.locator('#call-gateway').textContent(),
    price: await page.locator('#call-price').textContent(),
    timer: await page.locator('#call-timer').textContent(),
    cost: await page.locator('#call-cost').textContent(),
    node_calls: (await api('/api/calls')).body.calls.map((c) => ({ state: c.state, gateway: c.gateway?.name })),
  };
  await shot(page, 'call-echo');
  const echoEnd = await hangUp(page);
  result.echo = { during: echoDuring, end: echoEnd, after: await callListEmpty() };

  // Then Bob through the SIP trunk: Alice picks another service than the recommended one.
  await page.getByRole('button', { name: 'New call' }).click();
  await list(page, expect.destination);
  await page.locator('#choice').waitFor({ state: 'visible', timeout: STEP_MS });
  await page.getByLabel(expect.sip.name, { exact: true }).check();
  const accept = page.getByRole('button', { name: `Call via ${expect.sip.name}` });
  started = Date.now();
  await accept.click();
  await page.getByText('Connected', { exact: true }).waitFor({ timeout: STEP_MS });
  const sipConnected = Date.now() - started;
  const sipMedia = await talking(page, 'SIP call');
  const firstCost = await page.locator('#call-cost').textContent();
  // The running cost grows with each billed second.
  const laterCost = await until('the running cost to grow', async () => {
    const cost = await page.locator('#call-cost').textContent();
    return cost !== firstCost ? cost : null;
  });
  const sipDuring = {
    media: sipMedia,
    click_to_connected_ms: sipConnected,
    gateway: await page.locator('#call-gateway').textContent(),
    price: await page.locator('#call-price').textContent(),
    first_cost: firstCost,
    later_cost: laterCost,
    node_calls: (await api('/api/calls')).body.calls.map((c) => ({ state: c.state, gateway: c.gateway?.name })),
  };
  await shot(page, 'call-sip');
  const sipEnd = await hangUp(page);
  result.sip = {
    during: sipDuring,
    end: sipEnd,
    displayed_cost: await page.locator('#call-cost').textContent(),
    after: await callListEmpty(),
  };
  await shot(page, 'call-ended');

  // Alice closes the tab in the middle of a call: the page's last request hangs up, and
  // the node settles the call with the gateway as any hang-up does.
  await page.getByRole('button', { name: 'New call' }).click();
  await list(page, expect.destination);
  await page.locator('#choice').waitFor({ state: 'visible', timeout: STEP_MS });
  await page.getByLabel(expect.echo.name, { exact: true }).check();
  await page.getByRole('button', { name: `Call via ${expect.echo.name}` }).click();
  await page.getByText('Connected', { exact: true }).waitFor({ timeout: STEP_MS });
  await talking(page, 'the call closed with the page');
  const closedId = await page.locator('#call').getAttribute('data-call-id');
  await page.close();
  result.closed = {
    call_id: closedId,
    after: await callListEmpty(),
    call: (await api(`/api/calls/${closedId}`)).body,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
  await context.close();
  rmSync(profile, { recursive: true, force: true });
  process.exit(0);
} catch (error) {
  process.stderr.write(`browser test failed: ${error.stack ?? error}\n`);
  process.stderr.write(`seen so far: ${JSON.stringify(result)}\n`);
  await shot(page, 'failure').catch(() => {});
  await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
  process.exit(1);
}
