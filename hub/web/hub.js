// hub.js: the browser client of sessionhub.
//
// One dependency-free ES module for modern browsers (no build step). hubd serves it
// at GET /hub.js; its TypeScript declarations are at GET /hub.d.ts. The wire
// protocol is described in docs/protocol.md; docs/browser.md shows how to use this
// module from a page and from React.
//
//   import { HubClient } from '/hub.js';
//   const hub = new HubClient();                 // ws(s)://<this page's host>/ws
//   hub.addEventListener('participants', (e) => render(e.detail));
//   await hub.connect();
//   await hub.join('demo', { name: 'Ada', role: 'instructor' });
//   hub.updateCursor({ line: 3, column: 7 });
//
// The client behaves as the Go client (client/*.go): it connects with a timeout,
// reconnects after an unexpected close with exponential backoff and full jitter,
// joins its session again by itself (with `recover`), dispatches each broadcast
// exactly once (the missed ones replayed after a rejoin, none twice), and does
// not retry the final close codes. Everything it learns is dispatched as DOM
// events: it is an EventTarget, and every event is a CustomEvent whose `detail`
// is the payload.

/** The client's connection states, as found in `hub.state` and `statechange` events. */
export const States = Object.freeze({
  IDLE: 'idle', // created, connect() not called yet
  CONNECTING: 'connecting', // the first connection attempt (of connect()) is under way
  CONNECTED: 'connected', // a connection is open
  RECONNECTING: 'reconnecting', // the connection dropped; waiting for or making a new attempt
  DISCONNECTED: 'disconnected', // ended for good: a final close code, or reconnecting gave up
  CLOSED: 'closed', // close() was called
});

/**
 * Close codes after which the client does not reconnect: 1000 (a normal
 * close: the server is done with this connection), 1003 (binary frame), 1008
 * (sustained rate abuse), 4001 (token expired), 4003 (removed by the server
 * API). The same set as the Go client's (protocol.StatusCode.Final).
 */
export const FINAL_CLOSE_CODES = Object.freeze([1000, 1003, 1008, 4001, 4003]);

/** The subprotocol with which the hub may put several messages in one frame. */
const BATCH_SUBPROTOCOL = 'sessionhub.batch';

const DEFAULTS = Object.freeze({
  connectTimeout: 20000,
  reconnect: Object.freeze({ initial: 500, factor: 2, max: 10000, maxAttempts: 5 }),
  cursorThrottle: 50,
  idleAfter: 60000,
});

/** The server messages that answer a request (they echo its ref), by request type. */
const REPLY_TYPE = Object.freeze({
  'join-session': 'session-joined',
  'leave-session': 'session-left',
  broadcast: 'ack',
  ping: 'pong',
});

const isObject = (v) => typeof v === 'object' && v !== null && !Array.isArray(v);
const isString = (v) => typeof v === 'string';
const isNumber = (v) => typeof v === 'number' && Number.isFinite(v);
const isParticipant = (p) => isObject(p) && isString(p.userId);
const isParticipantList = (v) => Array.isArray(v) && v.every(isParticipant);

/**
 * The server's message types with a check of the `data` the client relies on.
 * A message of another type, or whose data fails its check, is bad server input.
 */
const SERVER_MESSAGES = Object.freeze({
  'session-joined': (d) => isString(d.sessionId) && isString(d.selfId) && isParticipantList(d.participants),
  'session-left': (d) => d.sessionId === undefined || isString(d.sessionId),
  'user-joined': (d) => isParticipant(d.user) && (d.participants == null || isParticipantList(d.participants)),
  'user-left': (d) => isString(d.userId) && (d.participants == null || isParticipantList(d.participants)),
  'cursor-moved': (d) => isString(d.userId) && isObject(d.cursor),
  'user-activity-changed': (d) => isString(d.userId) && typeof d.isActive === 'boolean',
  broadcast: (d) => isString(d.event),
  ack: (d) => isNumber(d.offset),
  pong: () => true,
  error: (d) => isString(d.code),
});

/** An Error with a `code`: a server error code, or one of the client's own. */
function hubError(code, message, extra) {
  const err = new Error(message);
  err.name = 'HubError';
  err.code = code;
  if (extra) Object.assign(err, extra);
  return err;
}

const noop = () => {};

/** Sort key of a participant: joinedAt (RFC 3339, to the nanosecond), then userId. */
function joinedKey(p) {
  const s = isString(p.joinedAt) ? p.joinedAt : '';
  const ms = Date.parse(s);
  const frac = /\.(\d+)/.exec(s);
  const ns = frac ? Number(frac[1].slice(0, 9).padEnd(9, '0')) % 1e6 : 0; // below the millisecond
  return [Number.isNaN(ms) ? 0 : ms, ns];
}

function compareParticipants(a, b) {
  const [ams, ans] = joinedKey(a);
  const [bms, bns] = joinedKey(b);
  if (ams !== bms) return ams - bms;
  if (ans !== bns) return ans - bns;
  return a.userId < b.userId ? -1 : a.userId > b.userId ? 1 : 0;
}

/** A frozen copy of a participant list, so that pages (and React) can treat it as immutable. */
const freezeList = (list) => Object.freeze(list.map((p) => Object.freeze({ ...p })));

/**
 * A connection to a sessionhub hub, kept open across unexpected drops.
 *
 * Events (CustomEvent, payload in `detail`): `statechange`, one per server
 * message type (`session-joined`, `session-left`, `user-joined`, `user-left`,
 * `cursor-moved`, `user-activity-changed`, `broadcast`, `ack`, `pong`, `error`),
 * `participants` and `rejoined`.
 */
export class HubClient extends EventTarget {
  /**
   * @param {string} [url] the hub's WebSocket endpoint; defaults to ws(s)://<location.host>/ws.
   *   A relative or http(s) URL is resolved against the page's location.
   * @param {object} [options] see hub.d.ts (HubClientOptions) and docs/browser.md.
   */
  constructor(url, options = {}) {
    super();
    if (isObject(url) && !(typeof URL === 'function' && url instanceof URL) && arguments.length < 2) {
      // new HubClient({ ...options }): the default URL with options.
      options = url;
      url = undefined;
    }
    const o = options || {};
    const r = o.reconnect === false ? { maxAttempts: -1 } : isObject(o.reconnect) ? o.reconnect : {};
    const positive = (v, d) => (isNumber(v) && v > 0 ? v : d);
    const nonNegative = (v, d) => (isNumber(v) && v >= 0 ? v : d);
    this._url = url;
    this._opts = {
      connectTimeout: positive(o.connectTimeout, DEFAULTS.connectTimeout),
      reconnect: {
        initial: positive(r.initial, DEFAULTS.reconnect.initial),
        factor: isNumber(r.factor) && r.factor >= 1 ? r.factor : DEFAULTS.reconnect.factor,
        max: positive(r.max, DEFAULTS.reconnect.max),
        // 0 = forever; -1 (reconnect: false) = never.
        maxAttempts: isNumber(r.maxAttempts) ? Math.max(-1, Math.floor(r.maxAttempts)) : DEFAULTS.reconnect.maxAttempts,
      },
      cursorThrottle: nonNegative(o.cursorThrottle, DEFAULTS.cursorThrottle),
      activity: o.activity
        ? { idleAfter: positive(isObject(o.activity) ? o.activity.idleAfter : undefined, DEFAULTS.idleAfter) }
        : null,
      batch: o.batch !== false,
      token: o.token,
      WebSocket: o.WebSocket,
    };
    this._opts.reconnect.max = Math.max(this._opts.reconnect.max, this._opts.reconnect.initial);

    this._state = States.IDLE;
    this._ws = null; // the current WebSocket (connecting or open)
    this._ready = false; // requests may be sent on _ws (it is open and any rejoin is done)
    this._connectTimer = null;
    this._reconnectTimer = null;
    this._attempt = 0; // reconnect attempts since the connection dropped
    this._connectWaiters = []; // {resolve, reject} of connect() calls
    this._nextRef = 0;
    this._pending = new Map(); // ref -> {type, resolve, reject, join?, rejoin?}
    this._queue = []; // requests made while not ready, sent once it is: {frame, ref}
    this._lastClose = null;

    // The session, as needed to join it again after a reconnect.
    this._membership = null; // {sessionId, userInfo (userId = selfId), presence, epoch, offset}
    this._sessionId = null;
    this._selfId = null;
    this._participants = Object.freeze([]);

    // Cursor throttle.
    this._cursorTimer = null; // running while a throttle window is open
    this._cursorPending = null; // the latest position not sent yet

    // Activity: what the page (or the activity monitor) wants the server to know.
    this._wantActive = null; // null until setActive() or the monitor says something
    this._activity = null; // the monitor's state when options.activity is on
    if (this._opts.activity) this._startActivityMonitor();
  }

  // ----- public state -----

  /** 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'disconnected' | 'closed' */
  get state() {
    return this._state;
  }

  /** The userId the server uses for this client, after a join; null outside a session. */
  get selfId() {
    return this._selfId;
  }

  /** The session this client is in; null outside a session. */
  get sessionId() {
    return this._sessionId;
  }

  /** The session's participants (frozen; a new array on every change), ordered as the server orders them. */
  get participants() {
    return this._participants;
  }

  /** The code and reason of the last close of a connection: {code, reason, wasClean}, or null. */
  get lastClose() {
    return this._lastClose;
  }

  // ----- connection -----

  /**
   * Opens the connection. Resolves when it is open (at once if it already is);
   * rejects when the attempt times out (code 'connect_timeout') or fails
   * ('connect_failed'), or when the client ends meanwhile. The first connection
   * is not retried: call connect() again. While reconnecting it waits for the
   * reconnection.
   * @returns {Promise<void>}
   */
  connect() {
    switch (this._state) {
      case States.CONNECTED:
        return Promise.resolve();
      case States.CLOSED:
        return Promise.reject(hubError('closed', 'sessionhub: the client is closed'));
      case States.CONNECTING:
      case States.RECONNECTING:
        return new Promise((resolve, reject) => this._connectWaiters.push({ resolve, reject }));
      default: // idle, disconnected
    }
    const p = new Promise((resolve, reject) => this._connectWaiters.push({ resolve, reject }));
    this._attempt = 0;
    this._setState(States.CONNECTING);
    this._open();
    return p;
  }

  /**
   * Closes the connection with 1000 and stops reconnecting, for good: state
   * 'closed'. Pending and waiting requests are rejected (code 'closed'); every
   * timer and listener of the client is removed. Idempotent.
   */
  close() {
    if (this._state === States.CLOSED) return;
    const ws = this._ws;
    this._detach();
    if (ws) {
      try {
        ws.close(1000);
      } catch {
        // already closing
      }
    }
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
    clearTimeout(this._cursorTimer);
    this._cursorTimer = null;
    this._cursorPending = null;
    this._stopActivityMonitor();
    this._failRequests(() => hubError('closed', 'sessionhub: the client was closed'));
    this._forgetSession();
    this._setState(States.CLOSED);
    this._settleConnect(hubError('closed', 'sessionhub: the client was closed'));
  }

  // ----- requests -----

  /**
   * Joins a session (leaving the one this client is in, if any). Resolves with
   * the session-joined data. After a reconnect the client joins it again by
   * itself, as the same user (selfId), with the same name, role, color and presence.
   * @returns {Promise<object>}
   */
  join(sessionId, userInfo = {}, { presence } = {}) {
    const info = {};
    for (const k of ['userId', 'name', 'role', 'color']) {
      if (userInfo && userInfo[k] !== undefined && userInfo[k] !== null) info[k] = userInfo[k];
    }
    const data = { sessionId, userInfo: info };
    if (presence) data.presence = presence;
    return this._request('join-session', data, { join: data });
  }

  /** Leaves the session (succeeds outside a session too). */
  async leave() {
    await this._request('leave-session', undefined);
  }

  /**
   * Sends event with payload to the session's participants addressed by `to`
   * ('all', 'instructors', 'learners' or a userId). Resolves with the broadcast's offset.
   * @returns {Promise<number>}
   */
  async broadcast(event, payload, to = 'all') {
    const ack = await this._request('broadcast', { event, payload: payload === undefined ? null : payload, to });
    return ack.offset;
  }

  /**
   * Sends an application-level ping. Resolves with the round-trip time in ms.
   * @returns {Promise<number>}
   */
  async ping() {
    const now = () => (globalThis.performance ? performance.now() : Date.now());
    const start = now();
    await this._request('ping', {});
    return now() - start;
  }

  /**
   * Sends the local cursor ({line, column, file?, selection?}) to the other
   * participants, throttled: at most one cursor-update per `cursorThrottle` ms.
   * When idle the position goes at once (leading edge); within a window the
   * latest position replaces the waiting one and goes when the window ends
   * (trailing edge), so the last position is always sent. While the connection
   * is down the latest position waits and is sent once the client is back.
   */
  updateCursor(cursor) {
    if (this._state === States.CLOSED || !isObject(cursor)) return;
    const c = { line: cursor.line, column: cursor.column };
    if (cursor.file !== undefined && cursor.file !== null) c.file = cursor.file;
    if (cursor.selection) c.selection = cursor.selection;
    this._cursorPending = c;
    if (this._cursorTimer === null) this._flushCursor();
  }

  /**
   * Tells the other participants whether the user is active (activity-status).
   * Sent at once when connected and in a session; otherwise remembered and sent
   * after the next join or rejoin if the server's list says otherwise.
   */
  setActive(isActive) {
    if (this._state === States.CLOSED) return;
    this._wantActive = !!isActive;
    if (this._ready && this._sessionId) this._sendActivity(this._wantActive);
  }

  // ----- internals: connection lifecycle -----

  _setState(to, error) {
    const from = this._state;
    if (from === to) return;
    this._state = to;
    const detail = { from, to };
    if (error !== undefined) detail.error = error;
    this._emit('statechange', detail);
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  /** Resolves (err undefined) or rejects every connect() waiting. */
  _settleConnect(err) {
    const waiters = this._connectWaiters;
    this._connectWaiters = [];
    for (const w of waiters) {
      if (err) w.reject(err);
      else w.resolve();
    }
  }

  /** The URL of a connection attempt, with the token (if any) as a query parameter. */
  _resolveURL() {
    const loc = globalThis.location;
    let raw = this._url;
    if (raw === undefined || raw === null || raw === '') {
      if (!loc || !loc.host) throw new TypeError('sessionhub: no url given and no page location to derive it from');
      raw = `${loc.protocol === 'https:' ? 'wss' : 'ws'}://${loc.host}/ws`;
    }
    const u = new URL(String(raw), loc && loc.href ? loc.href : undefined);
    if (u.protocol === 'http:') u.protocol = 'ws:';
    else if (u.protocol === 'https:') u.protocol = 'wss:';
    const token = typeof this._opts.token === 'function' ? this._opts.token() : this._opts.token;
    if (token) u.searchParams.set('token', String(token));
    return u.toString();
  }

  /** Makes one connection attempt (state connecting or reconnecting). */
  _open() {
    let ws;
    try {
      const WS = this._opts.WebSocket || globalThis.WebSocket;
      if (typeof WS !== 'function') throw new TypeError('sessionhub: no WebSocket implementation (pass options.WebSocket)');
      const url = this._resolveURL();
      ws = this._opts.batch ? new WS(url, [BATCH_SUBPROTOCOL]) : new WS(url);
    } catch (err) {
      // A bad URL or no WebSocket: no attempt can succeed.
      this._attemptFailed({ code: 1006, reason: String(err && err.message ? err.message : err) }, 'connect_failed', true);
      return;
    }
    this._ws = ws;
    this._ready = false;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      clearTimeout(this._connectTimer);
      this._connectTimer = null;
      this._opened();
    };
    ws.onmessage = (ev) => this._onFrame(ev.data);
    ws.onerror = noop; // a close event always follows
    ws.onclose = (ev) => {
      const close = { code: ev.code || 1006, reason: ev.reason || '', wasClean: !!ev.wasClean };
      this._lastClose = close;
      this._detach();
      if (opened) this._dropped(close);
      else this._attemptFailed({ code: close.code, reason: close.reason }, 'connect_failed');
    };
    this._connectTimer = setTimeout(() => {
      this._connectTimer = null;
      this._detach();
      try {
        ws.close(1000);
      } catch {
        // not open yet: closing fails the attempt anyway
      }
      this._lastClose = { code: 1006, reason: 'connect timeout', wasClean: false };
      this._attemptFailed({ code: 1006, reason: 'connect timeout' }, 'connect_timeout');
    }, this._opts.connectTimeout);
  }

  /** Stops listening to the current WebSocket (it is being replaced or closed). */
  _detach() {
    clearTimeout(this._connectTimer);
    this._connectTimer = null;
    const ws = this._ws;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      ws.onerror = noop; // some implementations (ws for Node) throw on an unheard 'error'
    }
    this._ws = null;
    this._ready = false;
  }

  /** A connection attempt succeeded. */
  _opened() {
    const reconnected = this._state === States.RECONNECTING;
    const attempt = this._attempt;
    this._attempt = 0;
    this._setState(States.CONNECTED);
    this._settleConnect();
    if (reconnected && this._membership) this._rejoin(attempt);
    else this._becomeReady();
  }

  /** A connection attempt failed before it opened. */
  _attemptFailed(close, code, hopeless = false) {
    if (this._state === States.RECONNECTING && !hopeless) {
      this._scheduleReconnect();
      return;
    }
    // The first connection (connect()) is not retried.
    const err = hubError(code, `sessionhub: could not connect (${close.reason || close.code})`, { closeCode: close.code });
    this._failRequests(() => hubError('connection_lost', 'sessionhub: the connection could not be made'));
    this._forgetSession();
    this._setState(States.DISCONNECTED, close);
    this._settleConnect(err);
  }

  /** An open connection ended without close() being called. */
  _dropped(close) {
    this._failRequests(() => hubError('connection_lost', 'sessionhub: connection lost before the reply'), true);
    const final = FINAL_CLOSE_CODES.includes(close.code) || this._opts.reconnect.maxAttempts < 0;
    if (final) {
      this._giveUp({ code: close.code, reason: close.reason });
      return;
    }
    this._attempt = 0;
    this._setState(States.RECONNECTING);
    this._scheduleReconnect();
  }

  /** Waits the backoff delay of the next attempt, or gives up after the last one. */
  _scheduleReconnect() {
    const { initial, factor, max, maxAttempts } = this._opts.reconnect;
    if (maxAttempts > 0 && this._attempt >= maxAttempts) {
      this._giveUp({ attempts: this._attempt });
      return;
    }
    this._attempt += 1;
    // Full jitter: a random delay in [0, min(max, initial * factor^(n-1))].
    const bound = Math.min(max, initial * factor ** (this._attempt - 1));
    const delay = Math.random() * bound;
    this._reconnectTimer = setTimeout(() => {
      this._reconnectTimer = null;
      this._open();
    }, delay);
  }

  /** Ends in state 'disconnected': a final close code, or reconnecting gave up. */
  _giveUp(error) {
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
    this._failRequests(() => hubError('connection_lost', 'sessionhub: disconnected'));
    this._forgetSession();
    this._setState(States.DISCONNECTED, error);
    this._settleConnect(hubError('connection_lost', 'sessionhub: disconnected', { detail: error }));
  }

  /** Joins the last session again on a new connection, then lets requests through. */
  _rejoin(attempt) {
    const m = this._membership;
    const data = { sessionId: m.sessionId, userInfo: { ...m.userInfo } };
    if (m.presence) data.presence = m.presence;
    if (m.epoch !== undefined) data.recover = { epoch: m.epoch, offset: m.offset };
    const ws = this._ws;
    this._sendRequest('join-session', data, { join: data, rejoin: attempt }).then(
      () => {
        if (this._ws === ws) this._becomeReady();
      },
      (err) => {
        // A refusal (for example session_full) leaves the client connected
        // outside any session; a dropped connection is retried by _dropped.
        if (err && err.code !== 'connection_lost' && err.code !== 'closed' && this._ws === ws) {
          this._forgetSession();
          this._becomeReady();
        }
      },
    );
  }

  /** The connection is usable: sends what waited for it. */
  _becomeReady() {
    if (!this._ws) return;
    this._ready = true;
    const queue = this._queue;
    this._queue = [];
    for (const q of queue) this._write(q.frame);
    this._syncActivity();
    if (this._cursorPending && this._cursorTimer === null) this._flushCursor();
  }

  /**
   * Rejects the pending requests. With keepQueued (a dropped connection that
   * will be replaced) only those already sent: the queued ones wait for the
   * next connection.
   */
  _failRequests(makeErr, keepQueued = false) {
    const keep = new Set(keepQueued ? this._queue.map((q) => q.ref) : []);
    if (!keepQueued) this._queue = [];
    for (const [ref, p] of [...this._pending]) {
      if (keep.has(ref)) continue;
      this._pending.delete(ref);
      p.reject(makeErr()); // a rejoin's own handler ignores connection_lost and closed
    }
  }

  // ----- internals: sending -----

  _frame(type, data, ref) {
    const msg = { type };
    if (data !== undefined) msg.data = data;
    if (ref !== undefined) msg.ref = ref;
    return JSON.stringify(msg);
  }

  _write(frame) {
    const ws = this._ws;
    if (!ws) return false;
    try {
      ws.send(frame);
      return true;
    } catch {
      return false; // closing: the close event rejects what was pending
    }
  }

  /** Sends a request when the client is ready (queues it meanwhile) and waits for its reply. */
  _request(type, data, extra = {}) {
    switch (this._state) {
      case States.CLOSED:
        return Promise.reject(hubError('closed', 'sessionhub: the client is closed'));
      case States.IDLE:
      case States.DISCONNECTED:
        return Promise.reject(hubError('not_connected', 'sessionhub: not connected (call connect() first)'));
      default:
    }
    return this._sendRequest(type, data, extra, !this._ready);
  }

  /** Registers a pending request and writes it (or queues it when queue is true). */
  _sendRequest(type, data, extra, queue = false) {
    const ref = String(++this._nextRef);
    let frame;
    try {
      frame = this._frame(type, data, ref);
    } catch (err) {
      return Promise.reject(hubError('bad_request', `sessionhub: cannot encode ${type}: ${err.message}`));
    }
    return new Promise((resolve, reject) => {
      this._pending.set(ref, { type, resolve, reject, ...extra });
      if (queue) this._queue.push({ frame, ref });
      else this._write(frame);
    });
  }

  /** Sends the waiting cursor position and opens a throttle window. */
  _flushCursor() {
    if (!this._ready || !this._cursorPending) return; // sent by _becomeReady
    const c = this._cursorPending;
    this._cursorPending = null;
    if (this._write(this._frame('cursor-update', c))) this._patchSelf({ cursor: c });
    if (this._opts.cursorThrottle > 0) {
      this._cursorTimer = setTimeout(() => {
        this._cursorTimer = null;
        this._flushCursor(); // trailing edge: the latest position, if one came within the window
      }, this._opts.cursorThrottle);
    }
  }

  _sendActivity(isActive) {
    if (this._write(this._frame('activity-status', { isActive }))) this._patchSelf({ isActive });
  }

  /** In a session, tells the server the wanted activity if its list says otherwise. */
  _syncActivity() {
    if (!this._ready || !this._sessionId || this._wantActive === null) return;
    const self = this._participants.find((p) => p.userId === this._selfId);
    if (!self || self.isActive !== this._wantActive) this._sendActivity(this._wantActive);
  }

  // ----- internals: receiving -----

  /** One WebSocket frame: one message, or several separated by '\n' (sessionhub.batch). */
  _onFrame(raw) {
    if (typeof raw !== 'string') {
      this._badInput('binary frame from the server');
      return;
    }
    for (const line of raw.split('\n')) {
      if (line.trim() !== '') this._onMessage(line);
    }
  }

  _badInput(message) {
    this._emit('error', { code: 'bad_server_message', message });
  }

  /** One server message. Bad input is reported as an error event and never thrown. */
  _onMessage(line) {
    let msg;
    try {
      msg = JSON.parse(line);
    } catch (err) {
      this._badInput(`not JSON: ${err.message}`);
      return;
    }
    if (!isObject(msg)) {
      this._badInput('not a JSON object');
      return;
    }
    const { type, ref } = msg;
    const data = msg.data === undefined || msg.data === null ? {} : msg.data;
    const check = isString(type) && Object.hasOwn(SERVER_MESSAGES, type) ? SERVER_MESSAGES[type] : null;
    let p = null;
    if (isString(ref) && this._pending.has(ref)) {
      p = this._pending.get(ref);
      this._pending.delete(ref);
    }
    if (!check) {
      this._badInput(`unknown message type ${JSON.stringify(type)}`);
      if (p) p.reject(hubError('bad_server_message', `sessionhub: unexpected reply ${JSON.stringify(type)}`));
      return;
    }
    if (!isObject(data) || !check(data)) {
      this._badInput(`invalid ${type} data`);
      if (p) p.reject(hubError('bad_server_message', `sessionhub: invalid ${type} from the server`));
      return;
    }
    if (p && type !== 'error' && REPLY_TYPE[p.type] !== type) {
      this._badInput(`${type} does not answer ${p.type}`);
      p.reject(hubError('bad_server_message', `sessionhub: unexpected reply ${type} to ${p.type}`));
      return;
    }
    this._handle(type, data, ref, p);
  }

  _handle(type, data, ref, p) {
    switch (type) {
      case 'session-joined': {
        if (p && p.join) {
          const { userInfo, presence, recover } = p.join;
          const epoch = isString(data.epoch) ? data.epoch : undefined;
          // A recovered rejoin keeps the offset it asked from: the replay of
          // what was missed follows and advances it. A first join or a fresh
          // start (recovered: false) starts from the session's offset: the
          // events before it are not coming.
          const recovered = data.recovered === true && recover && recover.epoch === epoch;
          this._membership = {
            sessionId: data.sessionId,
            userInfo: { ...userInfo, userId: data.selfId },
            presence,
            epoch,
            offset: recovered ? recover.offset : isNumber(data.offset) ? data.offset : 0,
          };
        }
        this._sessionId = data.sessionId;
        this._selfId = data.selfId;
        this._emit(type, data);
        this._setParticipants(data.participants); // already in the server's order
        if (p && p.rejoin) this._emit('rejoined', { ...data, attempt: p.rejoin });
        else if (p && this._ready) this._syncActivity();
        break;
      }
      case 'session-left':
        this._emit(type, data);
        this._forgetSession();
        break;
      case 'user-joined': {
        this._emit(type, data);
        if (data.participants) this._setParticipants(data.participants);
        else this._setParticipants([...this._participants.filter((x) => x.userId !== data.user.userId), data.user].sort(compareParticipants));
        break;
      }
      case 'user-left':
        this._emit(type, data);
        if (data.participants) this._setParticipants(data.participants);
        else this._setParticipants(this._participants.filter((x) => x.userId !== data.userId));
        break;
      case 'cursor-moved':
        this._emit(type, data);
        this._patchParticipant(data.userId, { cursor: data.cursor });
        break;
      case 'user-activity-changed':
        this._emit(type, data);
        this._patchParticipant(data.userId, { isActive: data.isActive });
        break;
      case 'broadcast':
        // Exactly once: an offset already seen (a replayed event the page
        // already had, or our own acked broadcast) is not dispatched again.
        if (this._seen(data.offset)) this._emit(type, data);
        break;
      case 'ack':
        this._seen(data.offset);
        this._emit(type, data);
        break;
      case 'pong':
        this._emit(type, data);
        break;
      case 'error': {
        // An error that answers a request also rejects it; detail.ref says which.
        this._emit(type, ref !== undefined ? { ...data, ref } : data);
        if (p) {
          p.reject(hubError(data.code, `sessionhub: ${data.code}: ${data.message || ''}`, { serverMessage: data.message }));
          return;
        }
        break;
      }
      default:
    }
    if (p) p.resolve(data);
  }

  /**
   * Records a broadcast offset seen in the session, for the recover of a
   * rejoin. Returns false for an offset not above the last one seen (already
   * delivered, or our own acked broadcast); true otherwise, and outside a
   * session or for a broadcast without an offset.
   */
  _seen(offset) {
    const m = this._membership;
    if (!m || !isNumber(offset)) return true;
    if (offset <= m.offset) return false;
    m.offset = offset;
    return true;
  }

  _setParticipants(list) {
    this._participants = freezeList(list);
    this._emit('participants', this._participants);
  }

  _patchParticipant(userId, patch) {
    const i = this._participants.findIndex((x) => x.userId === userId);
    if (i < 0) return;
    const list = this._participants.slice();
    list[i] = { ...list[i], ...patch };
    this._setParticipants(list);
  }

  /** The server does not echo our own cursor and activity: keep our entry current. */
  _patchSelf(patch) {
    if (this._selfId) this._patchParticipant(this._selfId, patch);
  }

  /** Forgets the session (no rejoin) and clears participants (with an event if there were any). */
  _forgetSession() {
    this._membership = null;
    this._sessionId = null;
    this._selfId = null;
    if (this._participants.length > 0) this._setParticipants([]);
  }

  // ----- internals: activity monitor (options.activity) -----

  /**
   * Watches page visibility and input: the user is active while the page is
   * visible and there was input within idleAfter ms. Listeners are added here
   * (only when the option is on) and removed by close().
   */
  _startActivityMonitor() {
    const doc = globalThis.document;
    const win = globalThis.window;
    if (!doc || !win) return; // not in a browser: nothing to watch
    const idleAfter = this._opts.activity.idleAfter;
    const a = { lastInput: Date.now(), timer: null, listeners: [] };
    this._activity = a;

    const visible = () => doc.visibilityState !== 'hidden';
    const armIdle = (ms) => {
      clearTimeout(a.timer);
      a.timer = setTimeout(onIdleCheck, ms);
    };
    const onIdleCheck = () => {
      a.timer = null;
      const left = idleAfter - (Date.now() - a.lastInput);
      if (left > 0) armIdle(left);
      else this._monitorSays(false);
    };
    const onInput = () => {
      a.lastInput = Date.now();
      if (a.timer === null) armIdle(idleAfter); // only re-armed after it fired: cheap for pointermove
      if (visible() && this._wantActive !== true) this._monitorSays(true);
    };
    const onVisibility = () => {
      if (visible()) onInput();
      else this._monitorSays(false);
    };
    const listen = (target, type, fn) => {
      target.addEventListener(type, fn, { passive: true, capture: true });
      a.listeners.push(() => target.removeEventListener(type, fn, { capture: true }));
    };
    listen(doc, 'visibilitychange', onVisibility);
    for (const type of ['keydown', 'pointerdown', 'pointermove', 'wheel', 'touchstart', 'scroll', 'input']) {
      listen(win, type, onInput);
    }
    listen(win, 'focus', onInput);
    this._wantActive = visible();
    armIdle(idleAfter);
  }

  _stopActivityMonitor() {
    const a = this._activity;
    if (!a) return;
    clearTimeout(a.timer);
    a.timer = null;
    for (const remove of a.listeners) remove();
    a.listeners = [];
    this._activity = null;
  }

  /** The monitor's view changed: only a change is sent, and only in a session. */
  _monitorSays(isActive) {
    if (this._wantActive === isActive) return;
    this._wantActive = isActive;
    this._syncActivity();
  }
}

export default HubClient;
