// Interlink's caller page: find the services that reach a number, pick one, call through
// it. The browser makes the WebRTC offer; the node carries it to the chosen gateway in the
// call protocol and returns the gateway's answer as an event; audio then flows between
// this browser and the gateway. A conference room is joined the same way: the node carries
// the offer and the room's join token to the room's bridge, and audio flows between this
// browser and the bridge. Everything goes through this origin's /api.
'use strict';

const $ = (id) => document.getElementById(id);

const ui = {
  form: $('dial-form'), number: $('number'), policy: $('policy'), find: $('find'),
  message: $('message'), nodeStatus: $('node-status'),
  choice: $('choice'), choiceTitle: $('choice-title'), recommendation: $('recommendation'),
  rows: document.querySelector('#gateways tbody'), accept: $('accept'), back: $('back'),
  call: $('call'), callTitle: $('call-title'), callState: $('call-state'),
  callGateway: $('call-gateway'), callPrice: $('call-price'), callTimer: $('call-timer'),
  callCost: $('call-cost'), callMedia: $('call-media'), callLog: $('call-log'),
  hangup: $('hangup'), newCall: $('new-call'), audio: $('remote-audio'),
  confForm: $('conference-form'), confToken: $('conference-token'), confJoin: $('conference-join'),
  confMessage: $('conference-message'), confRoom: $('conference-room'),
  confState: $('conference-state'), confRoomId: $('conference-room-id'),
  confBridge: $('conference-bridge'), confPeople: $('conference-people'),
  confMedia: $('conference-media'), confLeave: $('conference-leave'),
  confAudio: $('conference-audio'),
};

// How each ranking policy reads in a sentence.
const POLICIES = {
  balanced: 'a balance of price and quality',
  cheapest: 'lowest price',
  'best-quality': 'best quality',
};

// The call in progress, if any.
let call = null;
// The conference room this page is in, if any.
let conference = null;
// The last list of services, best first.
let listing = null;

class ApiError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

async function api(method, path, body) {
  const init = { method, headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiError('unreachable', 'Your Interlink node does not answer. Is it running?');
  }
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch (error) {
    json = null;
  }
  if (!response.ok) {
    throw new ApiError(json?.code ?? `http_${response.status}`,
      json?.message ?? `The node answered HTTP ${response.status}.`);
  }
  return json;
}

function showMessage(text, kind = 'error', where = ui.message) {
  where.textContent = text;
  where.className = `message ${kind}`;
  where.hidden = false;
}

function clearMessage(where = ui.message) {
  where.hidden = true;
  where.textContent = '';
}

// Money in minor units as the currency writes it: 3 GBP minor units is "0.03 GBP".
function money(minor, exponent, currency) {
  const value = (minor / 10 ** exponent).toFixed(exponent);
  return `${value} ${currency}`;
}

// The answered time billed for `ms`, as the receipt bills it: whole seconds rounded up,
// then whole billing increments.
function billedSeconds(ms, increment) {
  const seconds = Math.ceil(ms / 1000);
  const step = Math.max(1, increment);
  return Math.ceil(seconds / step) * step;
}

// The setup fee plus the per-minute price pro rata, rounded up to a whole minor unit.
function charge(tariff, billed) {
  return tariff.setup_fee_minor + Math.ceil((tariff.per_minute_minor * billed) / 60);
}

function clock(ms) {
  const total = Math.floor(ms / 1000);
  const minutes = Math.floor(total / 60);
  const seconds = String(total % 60).padStart(2, '0');
  return `${minutes}:${seconds}`;
}

function stars(mos) {
  const full = Math.round(mos);
  return '★'.repeat(full) + '☆'.repeat(Math.max(0, 5 - full));
}

function element(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === 'text') node.textContent = value;
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

// ---- Finding services ----

async function showNode() {
  try {
    const node = await api('GET', '/api/node');
    const id = node.peer_id;
    ui.nodeStatus.textContent =
      `Your node ${id.slice(0, 4)}…${id.slice(-6)}, connected to ${node.connected_peers} peer(s).`;
    if ([...ui.policy.options].some((o) => o.value === node.policy)) ui.policy.value = node.policy;
  } catch (error) {
    ui.nodeStatus.textContent = error.message;
  }
}

async function findServices(event) {
  event.preventDefault();
  clearMessage();
  const destination = ui.number.value.trim();
  if (!destination) {
    showMessage('Type the number to call, with + and the country code.');
    ui.number.focus();
    return;
  }
  ui.choice.hidden = true;
  ui.find.disabled = true;
  ui.find.textContent = 'Finding services…';
  try {
    const query = new URLSearchParams({ destination, policy: ui.policy.value });
    listing = await api('GET', `/api/gateways?${query}`);
    showServices(listing);
  } catch (error) {
    listing = null;
    showMessage(error.message);
    ui.number.focus();
  } finally {
    ui.find.disabled = false;
    ui.find.textContent = 'Call';
  }
}

function showServices(found) {
  // The network answers with the best offers for the policy: say so when there were more,
  // and how old the answer is when it came from this node's cache (a refresh is running).
  const shown = found.gateways.length;
  const count = found.cut
    ? `The best ${shown} of ${found.offers_matching} services that`
    : `${shown} service(s)`;
  const age = found.cached_age_ms == null
    ? ''
    : `, as of ${Math.round(found.cached_age_ms / 1000)} s ago`;
  ui.choiceTitle.textContent =
    `${count} can reach ${found.destination} (${found.country}${age})`;
  const best = found.recommended;
  ui.recommendation.replaceChildren(
    element('strong', { text: `Recommended: ${best.name}` }),
    ` (ranked by ${POLICIES[found.policy] ?? found.policy}): ${best.why.join('; ')}.`,
  );
  ui.rows.replaceChildren(...found.gateways.map((g, i) => serviceRow(g, i)));
  selectService(found.gateways[0]);
  ui.choice.hidden = false;
  ui.accept.focus();
}

function serviceRow(gateway, index) {
  const id = `service-${index}`;
  const radio = element('input', {
    type: 'radio', name: 'service', id, value: gateway.peer_id,
    'aria-describedby': `${id}-why`,
  });
  radio.checked = index === 0;
  radio.addEventListener('change', () => selectService(gateway));
  const name = element('td', {}, [element('label', { for: id, text: gateway.name })]);
  if (index === 0) name.append(' ', element('span', { class: 'badge', text: 'Recommended' }));
  name.append(element('div', {
    id: `${id}-why`, class: 'why',
    text: `${gateway.region ? `${gateway.region}. ` : ''}${gateway.reasons.join('; ')}. Score ${gateway.breakdown}.`,
  }));
  const q = gateway.quality;
  const rtt = gateway.rtt_ms == null ? 'not measured' : `${gateway.rtt_ms.toFixed(1)} ms`;
  return element('tr', { dataset: { peerId: gateway.peer_id, rank: String(gateway.rank) } }, [
    element('td', {}, [radio]),
    name,
    element('td', { class: 'number price', text: `${gateway.price_per_minute} ${gateway.currency}` }),
    element('td', { class: 'number', text: `${gateway.setup_fee} ${gateway.currency}` }),
    element('td', { class: 'number', text: `${gateway.billing_increment_secs} s` }),
    element('td', {}, [
      element('span', { 'aria-hidden': 'true', class: 'stars', text: stars(q.mos) }),
      ` MOS ${q.mos.toFixed(1)}`,
    ]),
    element('td', { class: 'number', text: `${Math.round(q.estimated_answer_ratio * 100)} %` }),
    element('td', { class: 'number', text: rtt }),
    element('td', { class: 'number', text: gateway.score.toFixed(3) }),
  ]);
}

function selectService(gateway) {
  ui.accept.textContent = `Call via ${gateway.name}`;
  ui.accept.dataset.peerId = gateway.peer_id;
  ui.accept.dataset.name = gateway.name;
}

// ---- The call ----

function logLine(text) {
  const elapsed = call ? ` (${clock(performance.now() - call.startedAt)})` : '';
  ui.callLog.append(element('li', { text: `${text}${elapsed}` }));
}

function mark(current, step) {
  current.marks[step] ??= Math.round(performance.now() - current.startedAt);
}

function setState(text) {
  ui.callState.value = text;
}

function waitGathered(pc, ms) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState === 'complete') {
        pc.removeEventListener('icegatheringstatechange', done);
        clearTimeout(timer);
        resolve();
      }
    };
    // The offer goes with whatever candidates there are by then.
    const timer = setTimeout(resolve, ms);
    pc.addEventListener('icegatheringstatechange', done);
  });
}

// Opens the microphone into `current.stream` and a peer connection into `current.pc` whose
// remote audio plays in `audio`, and makes the offer with the candidates gathered.
async function offerAudio(current, audio) {
  current.stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
  if (current.marks) mark(current, 'microphone');
  const pc = new RTCPeerConnection();
  current.pc = pc;
  for (const track of current.stream.getTracks()) pc.addTrack(track, current.stream);
  pc.addEventListener('track', (event) => {
    audio.srcObject = event.streams[0] ?? new MediaStream([event.track]);
    audio.play().catch(() => {});
  });
  await pc.setLocalDescription(await pc.createOffer());
  await waitGathered(pc, 3000);
  return pc;
}

async function startCall() {
  clearMessage();
  const destination = listing.destination;
  const gateway = ui.accept.dataset.peerId;
  call = {
    id: null, pc: null, stream: null, events: null, tariff: null, answeredAt: null,
    startedAt: performance.now(), hangUpAsked: false, mediaReported: false, ended: false,
    // Milliseconds from the click to each step, for diagnostics.
    marks: {},
    stats: newStats(),
    ticker: null,
  };
  ui.choice.hidden = true;
  ui.form.hidden = true;
  ui.call.hidden = false;
  ui.hangup.hidden = false;
  ui.newCall.hidden = true;
  ui.callLog.replaceChildren();
  ui.callTitle.textContent = `Calling ${destination}`;
  ui.callGateway.textContent = ui.accept.dataset.name;
  ui.callPrice.textContent = '–';
  ui.callTimer.value = '0:00';
  ui.callCost.value = '–';
  ui.callMedia.value = '–';
  setState('Starting the microphone');
  ui.hangup.focus();
  const current = call;
  try {
    const pc = await offerAudio(current, ui.audio);
    pc.addEventListener('connectionstatechange', () => {
      if (pc.connectionState === 'connected') mark(current, 'connected');
      if (pc.connectionState === 'failed' && !current.ended) logLine('The audio connection failed');
    });
    mark(current, 'offer');
    if (current.hangUpAsked) throw new ApiError('cancelled', 'You hung up.');
    setState('Calling');
    const created = await api('POST', '/api/calls', {
      destination, gateway, policy: ui.policy.value, sdp_offer: pc.localDescription.sdp,
    });
    current.id = created.call_id;
    mark(current, 'posted');
    ui.call.dataset.callId = created.call_id;
    follow(current, created.events);
    if (current.hangUpAsked) hangUp();
  } catch (error) {
    if (error.code !== 'cancelled') showMessage(`The call could not start: ${error.message}`);
    ended(current, error.code === 'cancelled' ? 'You hung up.' : 'Not connected.');
  }
}

function follow(current, url) {
  const events = new EventSource(url);
  current.events = events;
  const on = (name, handler) => events.addEventListener(name, (event) => {
    if (current !== call) return;
    handler(JSON.parse(event.data));
  });
  on('inviting', (e) => {
    current.tariff = e.tariff;
    const t = e.tariff;
    ui.callGateway.textContent = e.gateway;
    ui.callPrice.textContent = `${t.per_minute} ${t.currency}/min, setup ${t.setup_fee} ${t.currency}, billed per ${t.billing_increment_secs} s`;
    setState(`Inviting ${e.gateway}`);
    logLine(`Inviting ${e.gateway}`);
  });
  on('trying', (e) => { setState(`Trying via ${e.gateway}`); logLine(`${e.gateway} is trying`); });
  on('ringing', (e) => { setState('Ringing'); logLine(`Ringing via ${e.gateway}`); });
  on('answered', async (e) => {
    current.answeredAt = performance.now();
    mark(current, 'answered');
    setState('Answered: connecting the audio');
    logLine(e.answered_by ? `Answered by ${e.answered_by}` : `Answered via ${e.gateway}`);
    current.ticker = setInterval(() => tick(current), 100);
    try {
      await current.pc.setRemoteDescription({ type: 'answer', sdp: e.sdp_answer });
    } catch (error) {
      showMessage(`The service's answer could not be used: ${error.message}`);
      hangUp();
    }
  });
  on('media', () => {
    mark(current, 'media_event');
    setState('Connected');
    logLine('Audio is flowing');
  });
  on('failed_over', (e) => logLine(`${e.gateway} failed (${e.reason}); trying the next service`));
  on('repriced', (e) => logLine(`${e.gateway} now charges ${e.per_minute}/min, within your limit`));
  on('hanging_up', () => setState('Hanging up'));
  on('ended', (e) => {
    events.close();
    let summary;
    if (e.answered) {
      const receipt = e.receipt;
      const cost = receipt?.amount ?? 'unknown';
      if (receipt?.amount_minor != null) {
        ui.callCost.value = money(receipt.amount_minor, current.tariff.exponent, receipt.currency);
      }
      summary = `Ended: ${e.cause}. Cost ${cost}, receipt ${receipt?.status ?? 'missing'}.`;
    } else if (e.outcome === 'cancelled') {
      summary = 'Ended: you hung up before the answer.';
    } else {
      summary = `Not connected: ${e.cause}`;
      showMessage(summary);
    }
    logLine(summary);
    ended(current, summary);
  });
  events.onerror = () => {
    if (events.readyState === EventSource.CLOSED && !current.ended) {
      showMessage('Lost contact with your node.');
    }
  };
}

async function tick(current) {
  if (current.answeredAt == null || current.ended) return;
  const elapsed = performance.now() - current.answeredAt;
  ui.callTimer.value = clock(elapsed);
  const t = current.tariff;
  if (t) {
    ui.callCost.value = money(charge(t, billedSeconds(elapsed, t.billing_increment_secs)), t.exponent, t.currency);
  }
  await readStats(current);
}

// Reads the audio figures of `current.pc` into `current.stats`; false if it cannot.
async function readMediaStats(current) {
  if (!current.pc || current.pc.connectionState === 'closed') return false;
  let report;
  try {
    report = await current.pc.getStats();
  } catch (error) {
    return false;
  }
  for (const stat of report.values()) {
    if (stat.type === 'inbound-rtp' && stat.kind === 'audio') {
      current.stats.packetsReceived = stat.packetsReceived ?? 0;
      current.stats.totalAudioEnergy = stat.totalAudioEnergy ?? 0;
      current.stats.audioLevel = stat.audioLevel ?? 0;
    } else if (stat.type === 'outbound-rtp' && stat.kind === 'audio') {
      current.stats.packetsSent = stat.packetsSent ?? 0;
    }
  }
  return true;
}

function newStats() {
  return { packetsReceived: 0, packetsSent: 0, totalAudioEnergy: 0, audioLevel: 0 };
}

async function readStats(current) {
  if (!(await readMediaStats(current))) return;
  const s = current.stats;
  ui.callMedia.value = `${s.packetsReceived} packets in, ${s.packetsSent} out`;
  if (s.packetsReceived > 0 && !current.mediaReported && current.id) {
    current.mediaReported = true;
    mark(current, 'first_audio');
    api('POST', `/api/calls/${current.id}/media`).catch(() => {});
  }
}

function hangUp() {
  if (!call || call.ended) return;
  const current = call;
  current.hangUpAsked = true;
  setState('Hanging up');
  // This leg ends at once; the node ends the others and the receipt follows.
  closeMedia(current);
  if (current.id) {
    api('DELETE', `/api/calls/${current.id}`).catch((error) => showMessage(error.message));
  }
}

function closeMedia(current, audio = ui.audio) {
  if (current.pc) {
    current.pc.close();
  }
  if (current.stream) {
    for (const track of current.stream.getTracks()) track.stop();
  }
  audio.srcObject = null;
}

function ended(current, summary) {
  if (current.ended) return;
  current.ended = true;
  clearInterval(current.ticker);
  current.events?.close();
  closeMedia(current);
  setState(summary);
  ui.hangup.hidden = true;
  ui.newCall.hidden = false;
  ui.newCall.focus();
}

function newCall() {
  call = null;
  ui.call.hidden = true;
  ui.form.hidden = false;
  ui.number.focus();
}


// ---- A conference room ----

function setConferenceState(text) {
  ui.confState.value = text;
}

async function joinConference(event) {
  event.preventDefault();
  clearMessage(ui.confMessage);
  const token = ui.confToken.value.trim();
  if (!token) {
    showMessage('Paste the join token the organiser of the room gave you.', 'error', ui.confMessage);
    ui.confToken.focus();
    return;
  }
  if (conference && !conference.ended) return;
  const current = {
    id: null, pc: null, stream: null, events: null, ended: false, leaving: false,
    stats: newStats(), ticker: null, view: null,
  };
  conference = current;
  ui.confJoin.disabled = true;
  ui.confJoin.textContent = 'Joining…';
  try {
    const pc = await offerAudio(current, ui.confAudio);
    pc.addEventListener('connectionstatechange', () => {
      if (current.ended) return;
      if (pc.connectionState === 'connected') setConferenceState('In the room');
      if (pc.connectionState === 'failed') setConferenceState('The audio connection failed');
    });
    const joined = await api('POST', '/api/conferences/join', { token, sdp_offer: pc.localDescription.sdp });
    current.id = joined.membership_id;
    current.view = joined;
    showRoom(joined);
    followConference(current, joined.events);
    await pc.setRemoteDescription({ type: 'answer', sdp: joined.sdp_answer });
    current.ticker = setInterval(() => conferenceStats(current), 500);
    if (current.leaving) leaveConference();
  } catch (error) {
    closeMedia(current, ui.confAudio);
    if (current.id) {
      api('DELETE', `/api/conferences/memberships/${current.id}`).catch(() => {});
    }
    current.ended = true;
    ui.confRoom.hidden = true;
    ui.confForm.hidden = false;
    showMessage(`You could not join: ${error.message}`, 'error', ui.confMessage);
    ui.confToken.focus();
  } finally {
    ui.confJoin.disabled = false;
    ui.confJoin.textContent = 'Join';
  }
}

function showRoom(joined) {
  ui.confForm.hidden = true;
  ui.confRoom.hidden = false;
  ui.confLeave.hidden = false;
  ui.confRoom.dataset.membershipId = joined.membership_id;
  ui.confRoomId.textContent = joined.room_id.slice(0, 8);
  ui.confRoomId.title = joined.room_id;
  ui.confBridge.textContent = joined.bridge.name;
  // The bridge tells who joins and leaves to the organiser only.
  ui.confPeople.textContent = `Up to ${joined.max_participants} participants (only the organiser is told who)`;
  ui.confMedia.value = '–';
  setConferenceState('Connecting the audio');
  ui.confLeave.focus();
}

function followConference(current, url) {
  const events = new EventSource(url);
  current.events = events;
  events.addEventListener('leaving', () => {
    if (!current.ended) setConferenceState('Leaving');
  });
  events.addEventListener('ended', (event) => {
    const e = JSON.parse(event.data);
    conferenceEnded(current, e.outcome === 'left' ? 'Left the room.' : `Ended: ${e.cause}.`);
  });
  events.onerror = () => {
    if (events.readyState === EventSource.CLOSED && !current.ended) {
      showMessage('Lost contact with your node.', 'error', ui.confMessage);
    }
  };
}

async function conferenceStats(current) {
  if (!(await readMediaStats(current))) return;
  const s = current.stats;
  ui.confMedia.value = `${s.packetsReceived} packets in, ${s.packetsSent} out`;
}

function leaveConference() {
  const current = conference;
  if (!current || current.ended) return;
  current.leaving = true;
  setConferenceState('Leaving');
  // The audio to the bridge ends at once; the node tells the bridge.
  closeMedia(current, ui.confAudio);
  if (current.id) {
    api('DELETE', `/api/conferences/memberships/${current.id}`)
      .catch((error) => showMessage(error.message, 'error', ui.confMessage));
  }
}

function conferenceEnded(current, summary) {
  if (current.ended) return;
  current.ended = true;
  clearInterval(current.ticker);
  current.events?.close();
  closeMedia(current, ui.confAudio);
  setConferenceState(summary);
  ui.confLeave.hidden = true;
  ui.confForm.hidden = false;
  ui.confToken.focus();
}

// For diagnostics and tests: where the call (or the conference) is and what its media did.
window.interlink = {
  async call() {
    if (!call) return null;
    await readStats(call);
    return {
      id: call.id,
      ended: call.ended,
      connectionState: call.pc?.connectionState ?? null,
      state: ui.callState.value,
      timer: ui.callTimer.value,
      cost: ui.callCost.value,
      marks: call.marks,
      ...call.stats,
    };
  },
  async conference() {
    if (!conference) return null;
    await readMediaStats(conference);
    return {
      id: conference.id,
      ended: conference.ended,
      connectionState: conference.pc?.connectionState ?? null,
      state: ui.confState.value,
      ...conference.stats,
    };
  },
};

ui.form.addEventListener('submit', findServices);
ui.accept.addEventListener('click', startCall);
ui.back.addEventListener('click', () => { ui.choice.hidden = true; ui.number.focus(); });
ui.hangup.addEventListener('click', hangUp);
ui.newCall.addEventListener('click', newCall);
ui.confForm.addEventListener('submit', joinConference);
ui.confLeave.addEventListener('click', leaveConference);
// Leaving the page hangs up and leaves the room at once rather than when the node notices
// the page has gone.
window.addEventListener('pagehide', () => {
  if (call?.id && !call.ended) {
    fetch(`/api/calls/${call.id}`, { method: 'DELETE', keepalive: true }).catch(() => {});
  }
  if (conference?.id && !conference.ended) {
    fetch(`/api/conferences/memberships/${conference.id}`, { method: 'DELETE', keepalive: true })
      .catch(() => {});
  }
});
showNode();
