// A participant joins a conference room from her node's web page, in Debian's chromium
// driven by playwright-core, with a fake microphone that plays a tone.
//
// Run by node/tests/conference_browser.rs, which starts the network, the bridge, the
// organiser and two node participants, and passes:
//   INTERLINK_URL        the page, e.g. http://127.0.0.1:PORT/
//   INTERLINK_ARTIFACTS  where screenshots go
//   INTERLINK_WAV        the microphone's sound: a WAV file of a tone, looped
//   INTERLINK_EXPECT     JSON: token, bad_token, others (the node participants' tones, Hz),
//                        own (the browser's tone, Hz)
// It talks with the test on stdin and stdout, one JSON object a line: it prints
// {"step": "joined"} once in the room and hearing the others, waits for the line "leave",
// leaves and prints {"step": "left"}, joins again and prints {"step": "rejoined"}, waits
// for the room to end (the organiser ends it), then prints {"step": "done", ...} with
// everything it saw and exits 0; or prints why it failed on stderr and exits 1. Every wait
// has a deadline.

import { chromium } from 'playwright-core';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const url = process.env.INTERLINK_URL;
const artifacts = process.env.INTERLINK_ARTIFACTS;
const wav = process.env.INTERLINK_WAV;
const expect = JSON.parse(process.env.INTERLINK_EXPECT ?? '{}');
const origin = new URL(url).origin;
const STEP_MS = 20_000;

const result = { outside_requests: [], console_errors: [], failed_responses: [] };

function check(condition, message) {
  if (!condition) throw new Error(message);
}

function say(object) {
  process.stdout.write(`${JSON.stringify(object)}\n`);
}

// Lines from the test, in order.
const commands = createInterface({ input: process.stdin });
const pending = [];
const waiting = [];
commands.on('line', (line) => {
  const next = waiting.shift();
  if (next) next(line.trim());
  else pending.push(line.trim());
});

async function command(expected, ms = 60_000) {
  const line = pending.length > 0
    ? pending.shift()
    : await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no "${expected}" from the test within ${ms} ms`)), ms);
      waiting.push((l) => { clearTimeout(timer); resolve(l); });
    });
  check(line === expected, `the test said ${JSON.stringify(line)}, not ${expected}`);
}

// Polls `probe` until it returns a truthy value.
async function until(what, probe, ms = STEP_MS) {
  const giveUp = Date.now() + ms;
  for (;;) {
    const last = await probe();
    if (last) return last;
    if (Date.now() > giveUp) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function api(path) {
  const response = await fetch(new URL(path, origin));
  return response.json();
}

async function shot(page, name) {
  await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
}

// Starts listening to what the page plays from the room: the remote stream through an
// AnalyserNode, whose last samples `heardTones` measures.
async function listen(page) {
  await page.evaluate(async () => {
    const stream = document.getElementById('conference-audio').srcObject;
    if (!stream) throw new Error('no remote stream is playing');
    const context = new AudioContext();
    await context.resume();
    const analyser = context.createAnalyser();
    analyser.fftSize = 16384;
    context.createMediaStreamSource(stream).connect(analyser);
    window.probe = { context, analyser };
  });
}

// The power of each frequency of `frequencies` (Goertzel) in the last third of a second
// the page played from the room, and the level of the whole.
async function heardTones(page, frequencies) {
  return page.evaluate((freqs) => {
    const { context, analyser } = window.probe;
    const samples = new Float32Array(analyser.fftSize);
    analyser.getFloatTimeDomainData(samples);
    const n = samples.length;
    const power = (f) => {
      const coefficient = 2 * Math.cos((2 * Math.PI * f) / context.sampleRate);
      let s1 = 0;
      let s2 = 0;
      for (const x of samples) {
        const s0 = x + coefficient * s1 - s2;
        s2 = s1;
        s1 = s0;
      }
      // Normalised: a full-scale sine of f gives about 0.25.
      return (s1 * s1 + s2 * s2 - coefficient * s1 * s2) / (n * n);
    };
    const rms = Math.sqrt(samples.reduce((sum, x) => sum + x * x, 0) / n);
    return { powers: Object.fromEntries(freqs.map((f) => [f, power(f)])), rms };
  }, frequencies);
}

// Whether `heard` carries every tone of `present` and each of `absent` at less than a
// hundredth of the weakest present one.
function hears(heard, present, absent) {
  const weakest = Math.min(...present.map((f) => heard.powers[f]));
  return weakest > 1e-6 && absent.every((f) => heard.powers[f] < weakest / 100);
}

async function roomState(page) {
  return page.locator('#conference-state').textContent();
}

async function joinRoom(page, token) {
  await page.getByLabel('Join token').fill(token);
  await page.getByRole('button', { name: 'Join' }).click();
}

const profile = mkdtempSync(join(tmpdir(), 'interlink-chromium-'));
mkdirSync(artifacts, { recursive: true });
const context = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu',
    '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
    `--use-file-for-fake-audio-capture=${wav}`,
    '--allow-loopback-in-peer-connection', '--autoplay-policy=no-user-gesture-required',
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
  if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) {
    result.console_errors.push(message.text());
  }
});
page.on('pageerror', (error) => result.console_errors.push(error.message));

const others = expect.others;
const own = expect.own;
const all = [...others, own];

try {
  await page.goto(url);
  await page.getByText(/Your node 12D3/).waitFor({ timeout: STEP_MS });

  // A token that is not the bridge's: refused on the page with the reason, no membership.
  await joinRoom(page, expect.bad_token);
  const message = page.locator('#conference-message');
  await message.waitFor({ state: 'visible', timeout: STEP_MS });
  result.refused = {
    message: await message.textContent(),
    room_hidden: await page.locator('#conference-room').isHidden(),
    memberships: (await api('/api/conferences/memberships')).memberships.length,
  };
  await shot(page, 'conference-refused');

  // The room's token: in the room, audio both ways, and the others' tones heard.
  let started = Date.now();
  await joinRoom(page, expect.token);
  await until('the page to be in the room', async () => (await roomState(page)) === 'In the room');
  const connectedMs = Date.now() - started;
  result.message_cleared = await message.isHidden();
  const media = await until('audio both ways', async () => {
    const c = await page.evaluate(() => window.interlink.conference());
    return c && c.packetsReceived > 25 && c.packetsSent > 25 && c.totalAudioEnergy > 0 ? c : null;
  });
  await listen(page);
  const heard = await until('the page to hear the others and not itself', async () => {
    const h = await heardTones(page, all);
    return hears(h, others, [own]) ? h : null;
  });
  result.joined = {
    click_to_in_room_ms: connectedMs,
    media,
    heard,
    room_id: await page.locator('#conference-room-id').textContent(),
    bridge: await page.locator('#conference-bridge').textContent(),
    people: await page.locator('#conference-people').textContent(),
    node_memberships: (await api('/api/conferences/memberships')).memberships
      .map((m) => ({ state: m.state, bridge: m.bridge.name, room_id: m.room_id })),
  };
  await shot(page, 'conference-joined');
  say({ step: 'joined', membership_id: media.id });

  // The test checks the node participants hear this page's tone, then asks it to leave.
  await command('leave');
  started = Date.now();
  await page.getByRole('button', { name: 'Leave' }).click();
  await until('the page to have left', async () => (await roomState(page)) === 'Left the room.');
  result.left = {
    click_to_left_ms: Date.now() - started,
    conference: await page.evaluate(() => window.interlink.conference()),
    join_visible: await page.getByRole('button', { name: 'Join' }).isVisible(),
    node_memberships: (await until('no membership on the node', async () => {
      const { memberships } = await api('/api/conferences/memberships');
      return memberships.length === 0 ? memberships : null;
    })),
    after: await api(`/api/conferences/memberships/${media.id}`),
  };
  say({ step: 'left' });

  // In again; the organiser ends the room, and the page says so.
  await command('rejoin');
  await page.getByRole('button', { name: 'Join' }).click();
  await until('the page to be in the room again', async () => (await roomState(page)) === 'In the room');
  say({ step: 'rejoined' });
  const ended = await until('the room to end', async () => {
    const state = await roomState(page);
    return state.startsWith('Ended') ? state : null;
  }, 60_000);
  result.ended = {
    state: ended,
    conference: await page.evaluate(() => window.interlink.conference()),
    join_visible: await page.getByRole('button', { name: 'Join' }).isVisible(),
  };
  await shot(page, 'conference-ended');
  say({ step: 'done', ...result });
  commands.close();
  await context.close();
  rmSync(profile, { recursive: true, force: true });
  process.exit(0);
} catch (error) {
  process.stderr.write(`browser test failed: ${error.stack ?? error}\n`);
  process.stderr.write(`seen so far: ${JSON.stringify(result)}\n`);
  await shot(page, 'conference-failure').catch(() => {});
  await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
  process.exit(1);
}
