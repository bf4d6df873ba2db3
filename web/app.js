// The session service's web page: a frontend as a team would write one against the public API.
//
// It reads where the APIs are from /config.json (served beside it), gets a bearer token (from the
// local stack's dev-only token route), creates a session and a simulator over REST, asks for a
// single-use ticket and opens the market data stream with EventSource (SSE) or WebSocket. Each
// book is rebuilt from the stream's snapshot and deltas, and every sequenced event is checked
// against the last: an event must carry the next sequence number of its epoch, so a gap can be
// seen (and counted) instead of silently corrupting a book.
//
// Resuming: a browser cannot give a new EventSource a Last-Event-ID header, and its ticket is
// spent. So after a drop the page asks POST /v1/sessions/{id}/reconnect with the last event id it
// processed; the answer is a fresh ticket whose URL carries `last_event_id`, and says whether the
// stream will replay (no gap) or start from a snapshot. The same endpoint serves WebSocket, whose
// $connect records the URL's `last_event_id` for the streamer's push.
//
// Wire formats (streamer/src/wire.rs, streamer/src/push/messages.rs, functions/src/websocket):
//   SSE        id: <epoch>-<seq>, event: snapshot|delta|trade|status|reset|reconnect, data: JSON
//   WebSocket  {"type":"events","events":[{"id","event","data"}]} from the push,
//              {"type":"heartbeat_ack",...} or {"type":"error",...} answering our messages.
//
// Regions (docs/multi-region.md, "What a client does when its region fails"): the config names
// the region that served the page and every region. When the stream breaks and the region's API
// does not answer, the page reads the session in the next region until `X-Session-Home` names a
// live one, restarts the simulator the failover failed there (one restart between all of the
// session's clients: the Idempotency-Key is derived from the failed simulator's id), and resumes
// there from its last event id: the old epoch is gone, so the stream starts with a `reset`.
//
// Positions come from the event ids, never from `epoch` in the JSON: epochs are 64-bit numbers
// and JSON.parse rounds any integer above 2^53 to a double, so `data.epoch` may not be the
// epoch (the id, a string, is exact).

const HEARTBEAT_MS = 2000; // WebSocket heartbeat period (a real app would use ~30 s)
const STATUS_POLL_MS = 5000; // simulator status refresh over REST
const LEVELS_SHOWN = 10;
const TRADES_SHOWN = 20;
const NOTICES_KEPT = 60;
const FAILOVER_BACKOFF_MS = [50, 1000]; // first and longest wait between reads of the session
const PROBE_MS = 500; // after an SSE error, how long before asking whether the region answers

const $ = (id) => document.getElementById(id);

/** Everything the page knows; rendered by render(). */
const state = {
  config: null,
  region: null, // the name of the region the page talks to (the config's, until a failover)
  sessionHome: null, // `X-Session-Home` of the last read of the session
  failingOver: false,
  token: null,
  sessionId: null,
  simulatorId: null,
  transport: 'sse',
  connection: null, // the open SSE or WebSocket connection (see openSse / openWs)
  compression: 'none', // what the WebSocket ticket granted: 'deflate' or 'none'
  generation: 0, // bumped on every (re)connect: callbacks of older connections are ignored
  position: null, // {epoch: string, seq: number} of the last event applied to the books
  books: new Map(), // symbol -> {bids: Map<price, qty>, asks: Map<price, qty>, priceScale}
  trades: [],
  resumeCheck: null, // {from, mode} while a resumed stream has not delivered its first event
  snapshotParts: null, // {id, books} while a snapshot split into parts is arriving
  retries: 0, // consecutive failed (re)connects, for backoff
  stats: {
    events: 0,
    eventsHere: 0,
    gaps: 0,
    duplicates: 0,
    resumes: 0,
    resets: 0,
    snapshots: 0,
    latencyMs: null,
    apiRttMs: null,
    traceId: null, // of the last API call, to look it up in the tracing backend
    streamStatus: null,
    advice: null,
  },
};

// ---------------------------------------------------------------------------------------------
// REST

class ApiError extends Error {
  constructor(status, body) {
    // Problem documents (RFC 9457) have title/detail; API Gateway's own answers have message.
    const text = body?.detail ?? body?.title ?? body?.message ?? JSON.stringify(body);
    super(`${status}: ${text}`);
    this.status = status;
    this.body = body;
  }
}

/**
 * A call to the HTTP API, cross-origin, with the bearer token, timed for the health panel. Each
 * call is a user action and starts a trace of its own (W3C Trace Context): the authorizer, the
 * function and the backends continue it, and the page shows its id.
 */
async function api(method, path, body, options) {
  return (await call(currentRegion(), method, path, body, options)).data;
}

/**
 * `api` in `region` (an entry of the config's `regions`): the answer's body and the session's
 * home (`X-Session-Home`, multi-region only). A region that does not answer throws a TypeError
 * (fetch's network failure), an error answer an ApiError.
 */
async function call(region, method, path, body, { idempotent = false, key = null } = {}) {
  const trace = newTraceparent();
  state.stats.traceId = trace.traceId;
  const headers = { authorization: `Bearer ${state.token}`, traceparent: trace.header };
  if (body !== undefined) headers['content-type'] = 'application/json';
  // A retried click must not create a second session or simulator.
  if (idempotent || key) headers['idempotency-key'] = key ?? randomKey();
  const started = performance.now();
  const response = await fetch(`${region.http_api}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  state.stats.apiRttMs = performance.now() - started;
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) throw new ApiError(response.status, data);
  const home = response.headers.get('x-session-home');
  if (home) state.sessionHome = home;
  return { data, home };
}

/** The region the page talks to now. */
function currentRegion() {
  return state.config.regions.find((region) => region.name === state.region) ?? state.config;
}

/** The region `X-Session-Home` names (`local-b; epoch=2`). */
function homeName(header) {
  return header ? header.split(';')[0].trim() : null;
}

/** Whether `error` says the region did not answer at all (not an answer of the API). */
function unreachable(error) {
  return !(error instanceof ApiError);
}

function randomKey() {
  return randomHex(16);
}

function randomHex(bytes) {
  const random = crypto.getRandomValues(new Uint8Array(bytes));
  return Array.from(random, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** A sampled `traceparent` for a new trace whose root is the page's (unrecorded) span. */
function newTraceparent() {
  const traceId = randomHex(16);
  return { traceId, header: `00-${traceId}-${randomHex(8)}-01` };
}

// ---------------------------------------------------------------------------------------------
// Steps 1 to 3: token, session, simulator

async function getToken() {
  const subject = $('subject').value.trim() || 'web-user';
  const response = await fetch(currentRegion().token_url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ sub: subject }),
  });
  const body = await response.json();
  if (!response.ok) throw new ApiError(response.status, body);
  state.token = body.token;
  $('token-state').textContent = `for ${subject}, ${body.expires_in} s (dev-only route)`;
  notice('info', `Token minted for ${subject} by the dev-only POST /_local/tokens`);
}

async function createSession() {
  const session = await api('POST', '/v1/sessions', { name: 'web page' }, { idempotent: true });
  state.sessionId = session.session_id;
  state.simulatorId = null;
  $('session-status').textContent = session.status;
  notice('info', `Session ${session.session_id} created`);
}

async function startSimulator() {
  const symbols = $('symbols').value.split(/[\s,]+/).filter(Boolean);
  const rate = Number($('rate').value) || 20;
  const simulator = await api(
    'POST',
    `/v1/sessions/${state.sessionId}/simulators`,
    { symbols, events_per_second: rate },
    { idempotent: true },
  );
  state.simulatorId = simulator.simulator_id;
  showSimulator(simulator);
  notice('info', `Simulator ${simulator.simulator_id} started for ${symbols.join(', ')} at ${rate}/s`);
  await untilRunning(simulator);
}

/** A ticket needs a running simulator: waits for `simulator` to leave `starting` (bounded). */
async function untilRunning(simulator) {
  for (let i = 0; i < 40 && simulator.status === 'starting'; i += 1) {
    await sleep(250);
    Object.assign(simulator, await api('GET', simulatorPath()));
    showSimulator(simulator);
  }
}

function simulatorPath() {
  return `/v1/sessions/${state.sessionId}/simulators/${state.simulatorId}`;
}

function showSimulator(simulator) {
  $('simulator-status').textContent = simulator.reason
    ? `${simulator.status} (${simulator.reason})`
    : simulator.status;
}

/**
 * Keeps the simulator's REST status and the session's home fresh; its timing is the API round
 * trip shown.
 */
async function pollStatus() {
  if (state.token && state.sessionId && state.simulatorId && !state.failingOver) {
    try {
      await api('GET', `/v1/sessions/${state.sessionId}`);
      showSimulator(await api('GET', simulatorPath()));
    } catch (error) {
      $('simulator-status').textContent = `unknown (${error.message})`;
    }
  }
  setTimeout(pollStatus, STATUS_POLL_MS);
}

// ---------------------------------------------------------------------------------------------
// Step 4: the stream

/**
 * Opens the stream on `transport`. With `resumeFrom` (an event id) it goes through the reconnect
 * endpoint, so the new connection continues after that event; without, through a fresh ticket
 * (the stream starts with a snapshot).
 */
async function openStream(transport, resumeFrom, why) {
  closeConnection();
  const generation = ++state.generation;
  setStreamState('connecting');
  let ticket;
  try {
    if (resumeFrom) {
      ticket = await api('POST', `/v1/sessions/${state.sessionId}/reconnect`, {
        transport,
        last_event_id: resumeFrom,
        simulator_id: state.simulatorId,
        ...compressionAsked(transport),
      });
      const { mode, reason } = ticket.resume;
      state.resumeCheck = { from: resumeFrom, mode };
      state.stats.resumes += 1;
      notice(
        'info',
        mode === 'replay'
          ? `${why}: resuming over ${label(transport)} after ${resumeFrom}; the service promises a replay`
          : `${why}: resuming over ${label(transport)}; the service will send a snapshot (${reason})`,
      );
    } else {
      ticket = await api('POST', `/v1/sessions/${state.sessionId}/tickets`, {
        transport,
        simulator_id: state.simulatorId,
        ...compressionAsked(transport),
      });
      state.resumeCheck = null;
      state.position = null;
    }
  } catch (error) {
    if (generation !== state.generation) return;
    notice('failure', `${why}: no ticket (${error.message})`);
    if (unreachable(error) && state.config.regions.length > 1) {
      failOver(transport);
    } else {
      retryLater(transport, `${why} (retry)`);
    }
    return;
  }
  if (generation !== state.generation) return; // superseded while we waited
  state.transport = transport;
  state.stats.eventsHere = 0;
  $('stream-url').textContent = ticket.url.replace(/ticket=[^&]+/, 'ticket=…');
  // What the service granted: `deflate` only while its ws_compression flag is on for us.
  state.compression = ticket.compression ?? 'none';
  $('stream-url').textContent += ` (compression: ${state.compression})`;
  state.connection =
    transport === 'sse' ? openSse(ticket.url, generation) : openWs(ticket.url, generation);
  render();
}

/** After a failure: resume from where the books are, with backoff. */
function retryLater(transport, why, delayMs) {
  const generation = state.generation;
  const wait = delayMs ?? Math.min(10000, 500 * 2 ** state.retries);
  state.retries += 1;
  setStreamState('resuming');
  setTimeout(() => {
    if (generation === state.generation) openStream(transport, lastEventId(), why);
  }, wait);
}

function closeConnection() {
  state.generation += 1; // whatever the old connection still reports is ignored
  state.connection?.close();
  state.connection = null;
}

function openSse(url, generation) {
  const source = new EventSource(url);
  let lostAt = null;
  let probing = false;
  const current = () => generation === state.generation;
  for (const type of ['snapshot', 'delta', 'trade', 'status', 'reset', 'reconnect']) {
    source.addEventListener(type, (event) => {
      // lastEventId is this event's `id:` when it has one; only sequenced events are read by id.
      if (current()) onEvent(type, event.lastEventId, JSON.parse(event.data));
    });
  }
  source.onopen = () => {
    if (!current()) return;
    setStreamState('open');
    if (lostAt) {
      // EventSource reconnected by itself, to the same URL, with a Last-Event-ID header: the
      // streamer admits that as the continuation of the ticket's connection.
      notice('resume', `EventSource reconnected by itself (Last-Event-ID ${lostAt})`);
      state.stats.resumes += 1;
      state.resumeCheck = { from: lostAt, mode: 'replay' };
      lostAt = null;
    }
  };
  source.onerror = () => {
    if (!current()) return;
    if (source.readyState === EventSource.CONNECTING) {
      // The browser retries after the stream's `retry:`, forever if the streamer is gone: if
      // the region's API does not answer either, the region is down and the page fails over.
      lostAt = lastEventId();
      setStreamState('resuming');
      if (!probing) {
        probing = true;
        probeRegion(current).finally(() => {
          probing = false;
        });
      }
    } else {
      // Refused (ticket chain over, streamer gone): a fresh ticket from the reconnect endpoint.
      source.close();
      notice('failure', 'SSE connection refused or closed; asking the reconnect endpoint');
      retryLater('sse', 'SSE closed');
    }
  };
  return { kind: 'sse', close: () => source.close() };
}

/**
 * After `PROBE_MS`, fails over if the stream is still down (`current` and not open again) and the
 * region's API does not answer.
 */
async function probeRegion(current) {
  await sleep(PROBE_MS);
  const down = () => current() && $('stream-state').dataset.state !== 'open';
  if (!down() || state.config.regions.length < 2) return;
  try {
    await api('GET', `/v1/sessions/${state.sessionId}`);
  } catch (error) {
    if (down() && unreachable(error)) failOver(state.transport);
  }
}

// ---------------------------------------------------------------------------------------------
// Failover: the documented client path (docs/multi-region.md)

/**
 * The page's region does not answer: (1) read the session in the next region (wrapping round,
 * skipping the failed one), with backoff, until `X-Session-Home` names a live region; (2) start
 * the simulator again there if the failover failed it (`region_failover`), with the same spec and
 * an Idempotency-Key derived from the failed one's id; (3) resume there from the last event id:
 * the stream starts with a `reset`, then a snapshot of the new epoch.
 */
async function failOver(transport) {
  closeConnection();
  const generation = state.generation;
  const current = () => generation === state.generation;
  const failed = state.region;
  state.failingOver = true;
  setStreamState('failing over');
  notice('failure', `Region ${failed} does not answer: failing over`);
  let delay = FAILOVER_BACKOFF_MS[0];
  const backoff = async () => {
    await sleep(delay);
    delay = Math.min(FAILOVER_BACKOFF_MS[1], delay * 2);
  };
  try {
    await followHome(transport, current, failed, backoff);
  } finally {
    if (current()) state.failingOver = false;
  }
}

/** `failOver`'s steps, from the region `failed`. */
async function followHome(transport, current, failed, backoff) {
  const { regions } = state.config;
  const path = `/v1/sessions/${state.sessionId}`;
  let index = regions.findIndex((region) => region.name === failed);
  let read = null;
  let home = null;
  while (current()) {
    index = (index + 1) % regions.length;
    if (regions[index].name === failed) continue;
    try {
      read = await call(regions[index], 'GET', path);
      home = regions.find((region) => region.name === homeName(read.home) && region.name !== failed);
      if (home) break;
    } catch (error) {
      // That region is down too, or still refuses: the next one, after the backoff.
    }
    await backoff();
  }
  if (!current()) return;
  state.region = home.name;
  showEndpoints();
  notice('info', `Session ${state.sessionId} is homed in ${home.name} now (${read.home}): following it`);
  render();
  try {
    const failedOver = (read.data.simulators ?? []).find(
      (simulator) => simulator.status === 'failed' && simulator.reason === 'region_failover',
    );
    if (failedOver) await restartSimulator(failedOver, current, backoff);
  } catch (error) {
    notice('failure', `Failover: the simulator could not start in ${home.name} (${error.message})`);
  }
  if (current()) await openStream(transport, lastEventId(), `failover to ${home.name}`);
}

/** Starts the simulator `failed` again in the new home; `409` and `421` are retried. */
async function restartSimulator(failed, current, backoff) {
  const path = `/v1/sessions/${state.sessionId}/simulators`;
  // The failed one's spec; not its seed, a 64-bit number JSON.parse may have rounded.
  const spec = { symbols: failed.symbols, events_per_second: failed.events_per_second };
  const key = `restart-${failed.simulator_id}`;
  while (current()) {
    try {
      // 409: another client's identical request is pending; 421: this region's read cache
      // still names the old home.
      const simulator = await api('POST', path, spec, { key });
      state.simulatorId = simulator.simulator_id;
      showSimulator(simulator);
      notice('info', `Simulator ${simulator.simulator_id} started in ${state.region} (the failover failed ${failed.simulator_id})`);
      await untilRunning(simulator);
      return;
    } catch (error) {
      if (!unreachable(error) && error.status !== 409 && error.status !== 421) throw error;
    }
    await backoff();
  }
}

/** WebSocket tickets ask for compressed pushes where the browser can inflate them. */
function compressionAsked(transport) {
  return transport === 'ws' && 'DecompressionStream' in window ? { compression: 'deflate' } : {};
}

/** The raw deflate in `bytes` inflated to text. */
async function inflate(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('deflate-raw'));
  return new Response(stream).text();
}

/**
 * A WebSocket frame's JSON. The rule: a binary frame is a compressed push (the raw deflate of
 * the JSON message); a text frame is JSON as it is (heartbeat acknowledgements, error frames,
 * and every push of an uncompressed connection); a text frame that is not JSON on a compressed
 * connection is a push a gateway delivered as text, inflated from its bytes.
 */
async function frameJson(data) {
  if (typeof data !== 'string') return JSON.parse(await inflate(data));
  try {
    return JSON.parse(data);
  } catch (error) {
    if (state.compression !== 'deflate') throw error;
    return JSON.parse(await inflate(new TextEncoder().encode(data)));
  }
}

function openWs(url, generation) {
  const socket = new WebSocket(url);
  socket.binaryType = 'arraybuffer';
  // Frames are decoded in the order they came: inflating is asynchronous.
  let decoded = Promise.resolve();
  const current = () => generation === state.generation;
  const beat = { seq: 0, sent: new Map(), lastServerTime: null, seenAt: null, acked: 0, rttMs: null, quality: null };
  let timer = null;
  const heartbeat = () => {
    if (socket.readyState !== WebSocket.OPEN) return;
    beat.seq += 1;
    const message = { action: 'heartbeat', seq: beat.seq, client_time: Date.now() };
    // The server measures the round trip from its last acknowledgement and when we saw it.
    if (beat.lastServerTime !== null) {
      message.last_server_time = beat.lastServerTime;
      message.seen_at = beat.seenAt;
    }
    message.events_received = state.stats.eventsHere;
    const last = lastEventId();
    if (last) message.last_event_id = last; // where a new connection would resume from
    beat.sent.set(beat.seq, performance.now());
    socket.send(JSON.stringify(message));
  };
  socket.onopen = () => {
    if (!current()) return;
    setStreamState('open');
    heartbeat();
    timer = setInterval(heartbeat, HEARTBEAT_MS);
  };
  socket.onmessage = (message) => {
    decoded = decoded
      .then(() => frameJson(message.data))
      .then(onFrame, (error) => current() && notice('failure', `WebSocket frame unreadable: ${error.message}`));
  };
  const onFrame = (frame) => {
    if (!current()) return;
    if (frame.type === 'events') {
      for (const { id, event, data } of frame.events) {
        if (!current()) break; // an event of this batch made the page reconnect (a gap)
        onEvent(event, id, data);
      }
    } else if (frame.type === 'heartbeat_ack') {
      onAck(beat, frame, socket);
    } else if (frame.type === 'error') {
      notice('failure', `WebSocket error frame: ${frame.code}: ${frame.message}`);
      if (frame.code === 'connection_gone') {
        socket.close();
        retryLater('ws', 'connection gone', 0);
      }
    }
  };
  socket.onclose = (event) => {
    clearInterval(timer);
    if (!current()) return;
    notice('failure', `WebSocket closed by the server (${event.code}${event.reason ? ` ${event.reason}` : ''})`);
    retryLater('ws', 'WebSocket closed');
  };
  state.heartbeat = beat;
  return {
    kind: 'ws',
    close: () => {
      clearInterval(timer);
      socket.close(1000, 'client');
    },
  };
}

function onAck(beat, ack, socket) {
  const sentAt = beat.sent.get(ack.seq);
  beat.sent.delete(ack.seq);
  if (sentAt !== undefined) beat.rttMs = performance.now() - sentAt;
  beat.acked += 1;
  beat.lastServerTime = ack.server_time;
  beat.seenAt = Date.now();
  beat.quality = ack.quality;
  if (ack.reconnect) {
    // The service advises a new connection (connection age, poor quality, draining, moved).
    state.stats.advice = ack.reconnect.reason;
    notice('advice', `Heartbeat advice: reconnect (${ack.reconnect.reason})`);
    socket.close(1000, 'advised');
    retryLater('ws', `advised (${ack.reconnect.reason})`, 0);
  }
  render();
}

// ---------------------------------------------------------------------------------------------
// Market events: the books, the trades and the sequence check

/** One event of either transport; `id` is `<epoch>-<seq>` for sequenced events and snapshots. */
function onEvent(type, id, data) {
  state.stats.events += 1;
  state.stats.eventsHere += 1;
  state.retries = 0;
  if (data.emit_ns) {
    // Same machine, same clock: emit to arrival. Smoothed so the number can be read.
    const latency = Date.now() - data.emit_ns / 1e6;
    const previous = state.stats.latencyMs;
    state.stats.latencyMs = previous === null ? latency : previous + (latency - previous) / 8;
  }
  switch (type) {
    case 'snapshot': {
      const whole = assembleSnapshot(id, data);
      if (whole) applySnapshot(parseId(id), whole);
      break;
    }
    case 'reset':
      // The client's state is void; a snapshot follows. Not a gap: the service said so.
      state.stats.resets += 1;
      state.position = null;
      notice('reset', `Reset (${data.reason}): the books are rebuilt from the next snapshot`);
      break;
    case 'reconnect':
      state.stats.advice = data.reason;
      notice('advice', `Stream advice: reconnect in ${data.retry_ms} ms (${data.reason})`);
      closeConnection();
      retryLater(state.transport, `advised (${data.reason})`, data.retry_ms);
      break;
    case 'status':
      if (data.stream) {
        // The stream itself (upstream degraded or recovered): out of band, no sequence.
        notice('advice', `Stream ${data.state}${data.reason ? ` (${data.reason})` : ''}`);
      } else {
        sequenced(id, () => {
          state.stats.streamStatus = data.reason ? `${data.state} (${data.reason})` : data.state;
        });
      }
      break;
    case 'delta':
      sequenced(id, () => applyDelta(data));
      break;
    case 'trade':
      sequenced(id, () => {
        state.trades.unshift(data);
        state.trades.length = Math.min(state.trades.length, TRADES_SHOWN);
      });
      break;
    default:
      break;
  }
  scheduleRender();
}

/** `<epoch>-<seq>` as {epoch: string, seq: number} (sequence numbers stay far below 2^53). */
function parseId(id) {
  const dash = id.lastIndexOf('-');
  return { epoch: id.slice(0, dash), seq: Number(id.slice(dash + 1)) };
}

/** Applies a sequenced event only if it continues the stream: the gap check. */
function sequenced(id, apply) {
  const at = state.position;
  if (!at) return; // before the first snapshot (or after a reset): nothing to apply it to
  const next = parseId(id);
  if (next.epoch !== at.epoch || next.seq > at.seq + 1) {
    gap(`expected ${at.epoch}-${at.seq + 1}, got ${id}`);
    return;
  }
  if (next.seq <= at.seq) {
    // A repeat (a new push may restart a little before where we are): dropped by id.
    state.stats.duplicates += 1;
    return;
  }
  state.position = next;
  apply();
  checkResume(next);
}

function gap(what) {
  state.stats.gaps += 1;
  notice('gap', `GAP: ${what}; reconnecting for a fresh snapshot`);
  // The books are wrong now: start over from a snapshot rather than show them.
  state.position = null;
  openStream(state.transport, null, 'after a gap');
}

/** The first event after a resume says whether the replay really continued where we were. */
function checkResume(position) {
  const check = state.resumeCheck;
  if (!check) return;
  state.resumeCheck = null;
  const from = parseId(check.from);
  if (position.epoch === from.epoch && position.seq === from.seq + 1) {
    notice('resume', `Resumed after ${check.from}: next event ${lastEventId()}, no gap`);
  }
}

/**
 * A snapshot too big for one WebSocket message (over API Gateway's 128 KiB) comes in parts,
 * `part` k of `parts` n, in consecutive messages, each with some of the books: it is applied
 * once all have arrived. Returns the whole snapshot, or null while parts are missing.
 */
function assembleSnapshot(id, data) {
  if (!data.parts || data.parts === 1) return data;
  const pending = state.snapshotParts;
  if (data.part === 1 || !pending || pending.id !== id) {
    state.snapshotParts = { id, books: [] };
  }
  state.snapshotParts.books.push(...data.books);
  if (data.part < data.parts) return null;
  const books = state.snapshotParts.books;
  state.snapshotParts = null;
  return { ...data, books };
}

function applySnapshot(at, data) {
  state.stats.snapshots += 1;
  state.books.clear();
  for (const book of data.books) {
    state.books.set(book.symbol, {
      bids: new Map(book.bids),
      asks: new Map(book.asks),
      priceScale: book.price_scale,
    });
  }
  state.position = at;
  const id = lastEventId();
  if (state.resumeCheck) {
    state.resumeCheck = null;
    notice('resume', `Resumed with a fresh snapshot at ${id} (${data.cause})`);
  } else if (data.cause !== 'initial') {
    notice('reset', `Snapshot at ${id} (${data.cause})`);
  } else {
    notice('info', `Snapshot at ${id}: ${data.books.length} book(s)`);
  }
}

function applyDelta(data) {
  const book = state.books.get(data.symbol);
  if (!book) return;
  // A level with quantity zero is gone; any other replaces the level at that price.
  for (const [side, levels] of [[book.bids, data.bids], [book.asks, data.asks]]) {
    for (const [price, quantity] of levels) {
      if (Number(quantity) === 0) side.delete(price);
      else side.set(price, quantity);
    }
  }
}

function lastEventId() {
  return state.position ? `${state.position.epoch}-${state.position.seq}` : null;
}

// ---------------------------------------------------------------------------------------------
// Rendering (throttled: events may arrive far faster than a person can read)

let renderPending = false;
function scheduleRender() {
  if (renderPending) return;
  renderPending = true;
  setTimeout(() => {
    renderPending = false;
    render();
  }, 100);
}

function render() {
  const { stats } = state;
  $('get-token').disabled = !state.config;
  $('create-session').disabled = !state.token;
  $('start-simulator').disabled = !state.sessionId;
  $('connect').disabled = !state.simulatorId;
  $('drop').disabled = !state.connection;
  $('disconnect').disabled = !state.connection;
  $('session-id').textContent = state.sessionId ?? '—';
  $('simulator-id').textContent = state.simulatorId ?? '—';
  $('transport-name').textContent = state.connection ? label(state.connection.kind) : '—';
  $('last-event-id').textContent = lastEventId() ?? '—';
  $('events').textContent = stats.events;
  $('events-here').textContent = stats.eventsHere;
  $('gaps').textContent = stats.gaps;
  $('gaps').dataset.gaps = stats.gaps;
  $('duplicates').textContent = stats.duplicates;
  $('resumes').textContent = stats.resumes;
  $('resets').textContent = stats.resets;
  $('snapshots').textContent = stats.snapshots;
  $('latency').textContent =
    stats.latencyMs === null ? '—' : `${stats.latencyMs.toFixed(1)} ms (simulator → page)`;
  $('advice').textContent = stats.advice ?? 'none';
  $('stream-status').textContent = stats.streamStatus ?? 'none yet';
  $('trace-id').textContent = stats.traceId ?? '—';
  $('region').textContent = state.region ?? '—';
  $('session-home').textContent = state.sessionHome ?? '—';
  renderHealth();
  renderBooks();
  renderTrades();
}

function renderHealth() {
  const api = state.stats.apiRttMs === null ? '' : `API ${state.stats.apiRttMs.toFixed(0)} ms`;
  const beat = state.heartbeat;
  if (state.connection?.kind === 'ws' && beat) {
    const page = beat.rttMs === null ? '—' : `${beat.rttMs.toFixed(1)} ms`;
    const server = beat.quality ? ` · server ${beat.quality.rtt_ms} ms, jitter ${beat.quality.jitter_ms} ms` : '';
    $('rtt').textContent = `${page} (heartbeat)${server}${api ? ` · ${api}` : ''}`;
    const missed = beat.quality ? beat.quality.missed_heartbeats : 0;
    $('heartbeats').textContent = `sent ${beat.seq} · acked ${beat.acked} · missed ${missed}`;
  } else {
    $('rtt').textContent = api ? `${api} (SSE is one-way)` : '—';
    $('heartbeats').textContent = state.connection
      ? 'SSE: ": hb" comments, not visible to EventSource'
      : '—';
  }
}

function renderBooks() {
  const list = $('book-list');
  if (state.books.size === 0) return;
  const symbols = [...state.books.keys()].sort();
  // Rebuild each book's table in place (cheap at 10 Hz, and keeps the markup plain).
  list.replaceChildren(
    ...symbols.map((symbol) => {
      const book = state.books.get(symbol);
      const bids = [...book.bids].sort((a, b) => Number(b[0]) - Number(a[0])).slice(0, LEVELS_SHOWN);
      const asks = [...book.asks].sort((a, b) => Number(a[0]) - Number(b[0])).slice(0, LEVELS_SHOWN);
      const section = element('section', { className: 'book', dataset: { symbol } });
      const spread = bids.length && asks.length
        ? `spread ${(Number(asks[0][0]) - Number(bids[0][0])).toFixed(book.priceScale)}`
        : '';
      section.append(
        element('h3', {}, symbol, ' ', element('span', { className: 'spread' }, spread)),
      );
      const table = element('table');
      table.append(
        element('thead', {}, row('th', ['bid qty', 'bid', 'ask', 'ask qty'], ['num', 'num', 'num', 'num'])),
      );
      const body = element('tbody');
      for (let i = 0; i < Math.max(bids.length, asks.length); i += 1) {
        const [bidPrice, bidQty] = bids[i] ?? ['', ''];
        const [askPrice, askQty] = asks[i] ?? ['', ''];
        body.append(
          row('td', [bidQty, bidPrice, askPrice, askQty], ['num bid', 'num bid bid-price', 'num ask ask-price', 'num ask']),
        );
      }
      table.append(body);
      section.append(table);
      return section;
    }),
  );
}

function renderTrades() {
  $('trade-rows').replaceChildren(
    ...state.trades.map((trade) => {
      const side = trade.aggressor;
      const tr = row(
        'td',
        [new Date(trade.emit_ns / 1e6).toLocaleTimeString(), trade.symbol, side, trade.price, trade.quantity],
        ['', '', 'side', 'num', 'num'],
      );
      tr.className = side;
      return tr;
    }),
  );
}

function row(cell, texts, classes) {
  const tr = element('tr');
  texts.forEach((text, i) => tr.append(element(cell, { className: classes[i] }, text)));
  return tr;
}

function element(tag, { className, dataset } = {}, ...children) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (dataset) Object.assign(node.dataset, dataset);
  node.append(...children);
  return node;
}

function setStreamState(value) {
  const node = $('stream-state');
  node.textContent = value;
  node.dataset.state = value;
  render();
}

function notice(kind, text) {
  const item = element(
    'li',
    { className: `notice ${kind}` },
    element('span', { className: 'time' }, new Date().toLocaleTimeString()),
    ' ',
    text,
  );
  const list = $('notices');
  list.prepend(item);
  while (list.children.length > NOTICES_KEPT) list.lastChild.remove();
}

function label(transport) {
  return transport === 'ws' ? 'WebSocket' : 'SSE';
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---------------------------------------------------------------------------------------------
// Faults (dev only: the local stack's POST /_local/faults)

/** Lists the backend servers and gives each a kill or restore button. */
async function loadFaults() {
  const response = await fetch(state.config.faults_url);
  if (!response.ok) throw new ApiError(response.status, await response.json());
  const rows = $('fault-rows');
  rows.replaceChildren();
  for (const server of await response.json()) {
    const fault = server.up ? 'kill' : 'restore';
    const button = element('button', {}, server.up ? 'Kill' : 'Restore');
    button.id = `fault-${server.target}`;
    button.addEventListener('click', async () => {
      button.disabled = true;
      try {
        await injectFault(server.target, fault);
      } catch (error) {
        showError(error.message);
        notice('failure', error.message);
      }
    });
    const row = element(
      'tr',
      { dataset: { target: server.target, up: server.up } },
      element('td', {}, server.target),
      element('td', {}, server.zone),
      element('td', { className: 'fault-state' }, server.up ? 'up' : 'killed'),
      element('td', {}, button),
    );
    rows.append(row);
  }
}

async function injectFault(target, fault) {
  const response = await fetch(state.config.faults_url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ target, fault }),
  });
  const body = await response.json();
  if (!response.ok) throw new ApiError(response.status, body);
  notice(fault === 'kill' ? 'failure' : 'info', `${target} ${fault === 'kill' ? 'killed' : 'restored'} (dev-only POST /_local/faults)`);
  await loadFaults();
}

// ---------------------------------------------------------------------------------------------
// Wiring

/** Runs a button's action, showing its failure instead of throwing it away. */
function action(id, run) {
  $(id).addEventListener('click', async () => {
    $(id).disabled = true;
    $('error').hidden = true;
    try {
      await run();
    } catch (error) {
      showError(error.message);
      notice('failure', error.message);
    } finally {
      render();
    }
  });
}

async function main() {
  const response = await fetch('config.json');
  state.config = await response.json();
  state.region = state.config.region;
  showEndpoints();
  action('get-token', getToken);
  action('create-session', createSession);
  action('start-simulator', startSimulator);
  action('connect', () => openStream(selectedTransport(), null, 'connect'));
  action('drop', async () => {
    const last = lastEventId();
    notice('info', `Dropping the ${label(state.transport)} connection at ${last ?? 'no event yet'}`);
    closeConnection();
    await openStream(state.transport, last, 'after the drop');
  });
  action('disconnect', async () => {
    closeConnection();
    setStreamState('closed');
  });
  for (const radio of document.querySelectorAll('input[name="transport"]')) {
    radio.addEventListener('change', () => {
      const transport = selectedTransport();
      // Switching while connected: the same stream continues on the other transport.
      if (state.connection && transport !== state.transport) {
        openStream(transport, lastEventId(), `switch to ${label(transport)}`);
      }
    });
  }
  if (state.config.faults_url) {
    $('faults').hidden = false;
    await loadFaults();
  }
  pollStatus();
  render();
}

/** The endpoints of the region the page talks to, and the others it would fail over to. */
function showEndpoints() {
  const { http_api: http, ws_api: ws, sse } = currentRegion();
  const others = state.config.regions.filter((region) => region.name !== state.region);
  $('endpoints').textContent =
    `page ${location.origin} · HTTP API ${http} · WebSocket API ${ws} · streamer ${sse}` +
    (others.length ? ` · fails over to ${others.map((region) => region.name).join(', ')}` : '');
}

function selectedTransport() {
  return document.querySelector('input[name="transport"]:checked').value;
}

function showError(text) {
  $('error').textContent = text;
  $('error').hidden = false;
}

// A bug of the page must show, not stop the stream quietly.
window.addEventListener('error', (event) => showError(`Page error: ${event.message}`));
window.addEventListener('unhandledrejection', (event) => showError(`Page error: ${event.reason}`));

main().catch((error) => showError(`The page could not start: ${error.message}`));
