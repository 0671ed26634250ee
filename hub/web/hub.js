// @sessionhub/client: the browser (and Node) client of sessionhub.
//
// Built from js/packages/client/src/index.ts (`npm run build` in js/); hubd
// serves the built file at GET /hub.js and its declarations at GET /hub.d.ts
// (hub/web embeds them: do not edit hub/web/hub.js by hand). One
// dependency-free ES module for modern browsers, Node >= 20 (global WebSocket,
// or one passed in) and bundlers. The wire protocol is in docs/protocol.md;
// docs/browser.md shows how to use it, alone and through @sessionhub/react.
//
//   import { HubClient } from '@sessionhub/client';   // or '/hub.js' from hubd
//   const hub = new HubClient('wss://hub.example.com/ws', { token: () => fetchToken() });
//   hub.addEventListener('participants', (e) => render(e.detail));
//   await hub.connect();
//   await hub.join('demo', { name: 'Ada', role: 'instructor' });
//   hub.updateCursor({ line: 3, column: 7 });
//
// The client follows the contract's client policy (v1.1 "Client libraries"):
// the first connect is retried under the reconnect policy (exponential
// backoff, full jitter, maxAttempts); liveness through the application `ping`
// (heartbeatInterval, heartbeatTimeout); `offline`/`online` in browsers; the
// token from a function (async allowed) called for every connect and every
// refresh, made ahead of `expiresAt`; `presence: "diff"` by default, the list
// kept here; the attempt counter restarts only after a connection stayed up
// for `reconnect.resetAfter` after its rejoin. It joins its session again by
// itself (with `recover`), dispatches each broadcast exactly once, and does
// not retry the final close codes. Everything it learns is dispatched as DOM
// events: it is an EventTarget, and every event is a CustomEvent whose
// `detail` is the payload.
//
// The module touches no browser global at import time (safe under server
// rendering): window, navigator and WebSocket are looked up in connect().
//
// Everything here runs on the one JavaScript thread; the transport (below)
// is the seam through which another transport carries the same messages:
// when WebSocket attempts fail before they open (a proxy that refuses the
// upgrade), the client falls back to Server-Sent Events with its sends over
// POST (sseTransport, contract v1.2), and tries WebSocket again at a later
// reconnect (options.fallback). `client.transport` says which one is in use.
/** The subprotocol with which the hub may put several messages in one frame. */
const BATCH_SUBPROTOCOL = 'sessionhub.batch';
const noop = () => { };
/**
 * The WebSocket transport: `GET /ws` upgraded, the token as the `token` query
 * parameter, the `sessionhub.batch` subprotocol offered when batch is on.
 */
export const webSocketTransport = (req, events) => {
    const WS = req.options.WebSocket || globalThis.WebSocket;
    if (typeof WS !== 'function')
        throw new TypeError('no WebSocket implementation (pass options.WebSocket)');
    let url = req.url;
    if (req.token) {
        const u = new URL(url);
        u.searchParams.set('token', req.token);
        url = u.toString();
    }
    const ws = req.batch ? new WS(url, [BATCH_SUBPROTOCOL]) : new WS(url);
    let done = false;
    const detach = () => {
        done = true;
        ws.onopen = ws.onmessage = ws.onclose = null;
        ws.onerror = noop; // some implementations (ws for Node) throw on an unheard 'error'
    };
    ws.onopen = () => events.open();
    ws.onmessage = (ev) => events.message(ev.data);
    ws.onerror = noop; // a close event always follows
    ws.onclose = (ev) => {
        detach();
        events.close({ code: ev.code || 1006, reason: ev.reason || '', wasClean: !!ev.wasClean });
    };
    return {
        send: (frame) => ws.send(frame),
        close: (code = 1000, reason) => {
            if (done)
                return;
            detach();
            try {
                ws.close(code, reason);
            }
            catch {
                // not open yet, or already closing
            }
        },
    };
};
/** Most messages the hub takes in one POST /sse/send. */
const MAX_SEND_MESSAGES = 32;
/** Whether the fallback transport can run here: EventSource and fetch, given or global. */
function sseAvailable(o) {
    const g = globalThis;
    return typeof (o.EventSource || g.EventSource) === 'function' && typeof (o.fetch || g.fetch) === 'function';
}
/** The stream endpoint for a WebSocket URL: http(s), its trailing /ws as /sse (or /sse added). */
function streamURL(wsURL, override) {
    const u = new URL(override !== undefined ? String(override) : wsURL, wsURL);
    if (u.protocol === 'ws:')
        u.protocol = 'http:';
    else if (u.protocol === 'wss:')
        u.protocol = 'https:';
    if (override === undefined)
        u.pathname = /\/ws\/?$/.test(u.pathname) ? u.pathname.replace(/\/ws\/?$/, '/sse') : u.pathname.replace(/\/?$/, '/sse');
    return u;
}
/**
 * The fallback transport (contract v1.2): server messages as Server-Sent
 * Events from `GET /sse`, client messages POSTed to the path of the stream's
 * open event, one POST at a time (the next once the previous is answered, so
 * that order holds), up to 32 messages each, as text/plain (no CORS preflight;
 * the token goes as the `token` query parameter). EventSource's own retrying
 * is off: the client reconnects under its policy and rejoins with recovery.
 */
export const sseTransport = (req, events) => {
    const g = globalThis;
    const ES = req.options.EventSource || g.EventSource;
    const post = req.options.fetch || (g.fetch ? g.fetch.bind(globalThis) : undefined);
    if (typeof ES !== 'function' || typeof post !== 'function')
        throw new TypeError('no EventSource or fetch (pass options.EventSource and options.fetch)');
    const fb = isObject(req.options.fallback) ? req.options.fallback : {};
    const url = streamURL(req.url, fb.url);
    if (req.token)
        url.searchParams.set('token', req.token);
    const es = new ES(url.toString());
    let sendURL = '';
    let streamId = '';
    let done = false;
    let inFlight = false;
    const queue = [];
    const finish = (info) => {
        if (done)
            return;
        done = true;
        es.close();
        events.close(info);
    };
    es.addEventListener('open', (ev) => {
        // The stream's own open event carries its id; EventSource's (no data) does not.
        const data = ev.data;
        if (done || typeof data !== 'string')
            return;
        try {
            const o = JSON.parse(data);
            if (!isString(o.streamId))
                throw new TypeError('no streamId');
            streamId = o.streamId;
            const su = new URL(isString(o.send) ? o.send : '/sse/send', url);
            if (req.token)
                su.searchParams.set('token', req.token);
            sendURL = su.toString();
        }
        catch (err) {
            finish({ code: 1006, reason: `bad open event: ${errText(err)}`, wasClean: false });
            return;
        }
        events.open();
    });
    es.addEventListener('message', (ev) => {
        if (!done)
            events.message(ev.data);
    });
    es.addEventListener('close', (ev) => {
        let code = 1006;
        let reason = '';
        try {
            const c = JSON.parse(ev.data);
            if (isNumber(c.code))
                code = c.code;
            if (isString(c.reason))
                reason = c.reason;
        }
        catch {
            // a close event without its data: a drop
        }
        finish({ code, reason, wasClean: code !== 1006 });
    });
    es.onerror = () => finish({ code: 1006, reason: 'stream lost', wasClean: false });
    const pump = () => {
        if (inFlight || done || queue.length === 0)
            return;
        const batch = queue.splice(0, MAX_SEND_MESSAGES);
        inFlight = true;
        const body = `{"streamId":${JSON.stringify(streamId)},"messages":[${batch.join(',')}]}`;
        post(sendURL, { method: 'POST', headers: { 'Content-Type': 'text/plain' }, body }).then((res) => {
            inFlight = false;
            if (res.status !== 202) {
                finish({ code: 1006, reason: `send answered ${res.status}`, wasClean: false });
                return;
            }
            pump();
        }, (err) => {
            inFlight = false;
            finish({ code: 1006, reason: `send failed: ${errText(err)}`, wasClean: false });
        });
    };
    return {
        send: (frame) => {
            if (done || !sendURL)
                throw new Error('the stream is not open');
            queue.push(frame);
            pump();
        },
        close: (code = 1000) => {
            if (done)
                return;
            done = true;
            es.close();
            // A clean close tells the hub, so that the user leaves at once.
            if (code === 1000 && sendURL) {
                const body = JSON.stringify({ streamId, close: 1000 });
                post(sendURL, { method: 'POST', headers: { 'Content-Type': 'text/plain' }, body, keepalive: true }).catch(noop);
            }
        },
    };
};
// ----- constants -----
/** The client's connection states, as found in `hub.state` and `statechange` events. */
export const States = Object.freeze({
    IDLE: 'idle', // created, connect() not called yet
    CONNECTING: 'connecting', // connect() is making its first connection (retrying under the policy)
    CONNECTED: 'connected', // a connection is open
    RECONNECTING: 'reconnecting', // the connection dropped; waiting for or making a new attempt
    DISCONNECTED: 'disconnected', // ended for good: a final close code, or retrying gave up
    CLOSED: 'closed', // close() was called
});
/**
 * Close codes after which the client does not reconnect: 1000 (a normal
 * close: the server is done with this connection), 1003 (binary frame), 1008
 * (sustained rate abuse), 4001 (token expired; not final when the token comes
 * from a function), 4003 (removed by the server API).
 */
export const FINAL_CLOSE_CODES = Object.freeze([1000, 1003, 1008, 4001, 4003]);
const DEFAULTS = Object.freeze({
    connectTimeout: 20000,
    heartbeatInterval: 25000,
    heartbeatTimeout: 10000,
    reconnect: Object.freeze({ initial: 500, factor: 2, max: 10000, maxAttempts: 5, resetAfter: 10000 }),
    cursorThrottle: 50,
    idleAfter: 60000,
    fallback: Object.freeze({ after: 2, retryWebSocketAfter: 60000 }),
});
/** Refresh a token this long before it expires, at the latest. */
const REFRESH_AHEAD = 60000;
/** The server messages that answer a request (they echo its ref), by request type. */
const REPLY_TYPE = Object.freeze({
    'join-session': 'session-joined',
    'leave-session': 'session-left',
    broadcast: 'ack',
    ping: 'pong',
    'refresh-token': 'token-refreshed',
});
const isObject = (v) => typeof v === 'object' && v !== null && !Array.isArray(v);
const isString = (v) => typeof v === 'string';
const isNumber = (v) => typeof v === 'number' && Number.isFinite(v);
const isParticipant = (p) => isObject(p) && isString(p.userId);
const isParticipantList = (v) => Array.isArray(v) && v.every(isParticipant);
const optString = (v) => v === undefined || isString(v);
/**
 * The server's message types with a check of the `data` the client relies on.
 * A message of another type, or whose data fails its check, is bad server input.
 */
const SERVER_MESSAGES = Object.freeze({
    'session-joined': (d) => isString(d.sessionId) && isString(d.selfId) && isParticipantList(d.participants) && optString(d.expiresAt),
    'session-left': (d) => optString(d.sessionId),
    'user-joined': (d) => isParticipant(d.user) && (d.participants == null || isParticipantList(d.participants)),
    'user-left': (d) => isString(d.userId) && (d.participants == null || isParticipantList(d.participants)),
    'cursor-moved': (d) => isString(d.userId) && isObject(d.cursor),
    'user-activity-changed': (d) => isString(d.userId) && typeof d.isActive === 'boolean',
    broadcast: (d) => isString(d.event),
    ack: (d) => isNumber(d.offset),
    pong: () => true,
    'token-refreshed': (d) => optString(d.expiresAt),
    error: (d) => isString(d.code),
});
/** An Error with a `code`: a server error code, or one of the client's own. */
function hubError(code, message, extra) {
    const err = new Error(message);
    err.name = 'HubError';
    err.code = code;
    if (extra)
        Object.assign(err, extra);
    return err;
}
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
    if (ams !== bms)
        return ams - bms;
    if (ans !== bns)
        return ans - bns;
    return a.userId < b.userId ? -1 : a.userId > b.userId ? 1 : 0;
}
/** A frozen copy of a participant list, so that pages (and React) can treat it as immutable. */
const freezeList = (list) => Object.freeze(list.map((p) => Object.freeze({ ...p })));
/** Milliseconds from now until an RFC 3339 time; NaN when it does not parse. */
const msUntil = (rfc3339) => Date.parse(rfc3339) - Date.now();
/**
 * A connection to a sessionhub hub, kept open across unexpected drops.
 *
 * Events (CustomEvent, payload in `detail`): `statechange`, one per server
 * message type (`session-joined`, `session-left`, `user-joined`, `user-left`,
 * `cursor-moved`, `user-activity-changed`, `broadcast`, `ack`, `pong`,
 * `token-refreshed`, `error`), `participants` and `rejoined`.
 */
export class HubClient extends EventTarget {
    _url;
    _options;
    _opts;
    _state = States.IDLE;
    _conn = null; // the current connection (connecting or open)
    _gen = 0; // bumped for every attempt and every end of one: stale callbacks compare it
    _ready = false; // requests may be sent on _conn (it is open and any rejoin is done)
    _connectTimer = null;
    _reconnectTimer = null;
    _stableTimer = null;
    _heartbeatTimer = null;
    _refreshTimer = null;
    _lastReceived = 0; // Date.now() of the last frame received
    _pingSent = 0; // Date.now() of the heartbeat ping in flight, 0 when none
    _attempt = 0; // failed attempts since the client last had a stable connection
    _connectWaiters = [];
    _nextRef = 0;
    _pending = new Map();
    _queue = []; // requests made while not ready
    _lastClose = null;
    _lastError = null;
    _expiresAt = null;
    _offline = false;
    _netListeners = [];
    _transport = null; // of the current or last open connection
    _attemptTransport = 'websocket'; // of the attempt in progress
    _wsFailures = 0; // WebSocket attempts in a row that failed before they opened
    _sseUntil = 0; // Date.now() until which attempts use SSE
    // The session, as needed to join it again after a reconnect.
    _membership = null;
    _sessionId = null;
    _selfId = null;
    _participants = Object.freeze([]);
    // Cursor throttle.
    _cursorTimer = null; // running while a throttle window is open
    _cursorPending = null; // the latest position not sent yet
    // Activity: what the page (or the activity monitor) wants the server to know.
    _wantActive = null; // null until setActive() or the monitor says something
    _activity = null;
    constructor(url, options) {
        super();
        if (isObject(url) && !(typeof URL === 'function' && url instanceof URL) && options === undefined) {
            // new HubClient({ ...options }): the default URL with options.
            options = url;
            url = undefined;
        }
        const o = isObject(options) ? options : {};
        const r = o.reconnect === false ? { maxAttempts: -1 } : isObject(o.reconnect) ? o.reconnect : {};
        const positive = (v, d) => (isNumber(v) && v > 0 ? v : d);
        const nonNegative = (v, d) => (isNumber(v) && v >= 0 ? v : d);
        this._url = url;
        this._options = o;
        const initial = positive(r.initial, DEFAULTS.reconnect.initial);
        this._opts = {
            connectTimeout: positive(o.connectTimeout, DEFAULTS.connectTimeout),
            heartbeatInterval: nonNegative(o.heartbeatInterval, DEFAULTS.heartbeatInterval),
            heartbeatTimeout: positive(o.heartbeatTimeout, DEFAULTS.heartbeatTimeout),
            reconnect: {
                initial,
                factor: isNumber(r.factor) && r.factor >= 1 ? r.factor : DEFAULTS.reconnect.factor,
                max: Math.max(initial, positive(r.max, DEFAULTS.reconnect.max)),
                // 0 = forever; -1 (reconnect: false) = never.
                maxAttempts: isNumber(r.maxAttempts) ? Math.max(-1, Math.floor(r.maxAttempts)) : DEFAULTS.reconnect.maxAttempts,
                resetAfter: nonNegative(r.resetAfter, DEFAULTS.reconnect.resetAfter),
            },
            cursorThrottle: nonNegative(o.cursorThrottle, DEFAULTS.cursorThrottle),
            activity: o.activity
                ? { idleAfter: positive(isObject(o.activity) ? o.activity.idleAfter : undefined, DEFAULTS.idleAfter) }
                : null,
            batch: o.batch !== false,
            network: o.network !== false,
            token: o.token,
            transport: typeof o.transport === 'function' ? o.transport : webSocketTransport,
            fallback: o.fallback === false || typeof o.transport === 'function'
                ? null
                : {
                    after: positive(isObject(o.fallback) ? o.fallback.after : undefined, DEFAULTS.fallback.after),
                    retryWebSocketAfter: nonNegative(isObject(o.fallback) ? o.fallback.retryWebSocketAfter : undefined, DEFAULTS.fallback.retryWebSocketAfter),
                },
        };
        if (this._opts.activity)
            this._startActivityMonitor();
    }
    // ----- public state -----
    /**
     * The transport of the current connection (or of the last one): 'websocket',
     * 'sse' (the fallback) or 'custom' (options.transport); null before the first opened.
     */
    get transport() {
        return this._transport;
    }
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
    /**
     * Why the last connection attempt failed, or why the client gave up (a
     * HubError with a readable message); null once a connection is open.
     */
    get lastError() {
        return this._lastError;
    }
    /** Token mode: when the connection's token expires (RFC 3339), as the hub last said; null when unknown. */
    get expiresAt() {
        return this._expiresAt;
    }
    // ----- connection -----
    /**
     * Opens the connection. Resolves when it is open (at once if it already
     * is). A failed attempt is retried under the reconnect policy; the promise
     * rejects when the policy gives up (code 'connect_failed' or
     * 'connect_timeout', with a readable message), at once when no attempt can
     * succeed (a bad URL, no WebSocket), or when the client ends meanwhile.
     * While reconnecting it waits for the reconnection.
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
        this._lastError = null;
        this._listenNetwork();
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
        if (this._state === States.CLOSED)
            return;
        this._endConnection(1000);
        this._clearTimer('_reconnectTimer');
        this._clearTimer('_cursorTimer');
        this._cursorPending = null;
        this._stopActivityMonitor();
        this._unlistenNetwork();
        this._failRequests(() => hubError('closed', 'sessionhub: the client was closed'));
        this._forgetSession();
        this._setState(States.CLOSED);
        this._settleConnect(hubError('closed', 'sessionhub: the client was closed'));
    }
    // ----- requests -----
    /**
     * Joins a session (leaving the one this client is in, if any), with
     * `presence: "diff"` unless options say otherwise. Resolves with the
     * session-joined data. After a reconnect the client joins it again by itself,
     * as the same user (selfId), with the same name, role, color and presence.
     */
    join(sessionId, userInfo = {}, options = {}) {
        const info = {};
        for (const k of ['userId', 'name', 'role', 'color']) {
            const v = userInfo ? userInfo[k] : undefined;
            if (v !== undefined && v !== null)
                info[k] = v;
        }
        const presence = options && options.presence === 'full' ? 'full' : 'diff';
        const data = { sessionId, userInfo: info, presence };
        return this._request('join-session', data, { join: data });
    }
    /** Leaves the session (succeeds outside a session too). */
    async leave() {
        await this._request('leave-session', undefined);
    }
    /**
     * Sends event with payload to the session's participants addressed by `to`
     * ('all', 'instructors', 'learners' or a userId). Resolves with the broadcast's offset.
     */
    async broadcast(event, payload, to = 'all') {
        const ack = await this._request('broadcast', { event, payload: payload === undefined ? null : payload, to });
        return ack.offset;
    }
    /** Sends an application-level ping. Resolves with the round-trip time in ms. */
    async ping() {
        const now = () => (globalThis.performance ? performance.now() : Date.now());
        const start = now();
        await this._request('ping', {});
        return now() - start;
    }
    /**
     * Token mode: gets a token (from the token option) and hands it to the hub
     * on the live connection (`refresh-token`). Resolves with the new expiresAt
     * (RFC 3339, or null when the token has none). The client does this by
     * itself ahead of expiresAt when the token comes from a function.
     */
    async refreshToken() {
        const token = await this._getToken();
        if (!token)
            throw hubError('token_failed', 'sessionhub: no token to refresh with');
        const d = await this._request('refresh-token', { token });
        const exp = isString(d.expiresAt) ? d.expiresAt : null;
        this._expiresAt = exp;
        this._scheduleRefresh();
        return exp;
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
        if (this._state === States.CLOSED || !isObject(cursor))
            return;
        const c = { line: cursor.line, column: cursor.column };
        if (cursor.file !== undefined && cursor.file !== null)
            c.file = cursor.file;
        if (cursor.selection)
            c.selection = cursor.selection;
        this._cursorPending = c;
        if (this._cursorTimer === null)
            this._flushCursor();
    }
    /**
     * Tells the other participants whether the user is active (activity-status).
     * Sent at once when connected and in a session; otherwise remembered and sent
     * after the next join or rejoin if the server's list says otherwise.
     */
    setActive(isActive) {
        if (this._state === States.CLOSED)
            return;
        this._wantActive = !!isActive;
        if (this._ready && this._sessionId)
            this._sendActivity(this._wantActive);
    }
    // ----- internals: connection lifecycle -----
    _clearTimer(name) {
        const t = this[name];
        if (t !== null)
            clearTimeout(t);
        this[name] = null;
    }
    _setState(to, error) {
        const from = this._state;
        if (from === to)
            return;
        this._state = to;
        const detail = { from, to };
        if (error !== undefined)
            detail.error = error;
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
            if (err)
                w.reject(err);
            else
                w.resolve();
        }
    }
    /** The endpoint: the given URL (or the page's /ws), as ws: or wss:. Throws a TypeError when it cannot. */
    _resolveURL() {
        const loc = globalThis.location;
        let raw = this._url;
        if (raw === undefined || raw === null || raw === '') {
            if (!loc || !loc.host)
                throw new TypeError('no url given and no page location to derive it from');
            raw = `${loc.protocol === 'https:' ? 'wss' : 'ws'}://${loc.host}/ws`;
        }
        const u = new URL(String(raw), loc && loc.href ? loc.href : undefined);
        if (u.protocol === 'http:')
            u.protocol = 'ws:';
        else if (u.protocol === 'https:')
            u.protocol = 'wss:';
        if (u.protocol !== 'ws:' && u.protocol !== 'wss:')
            throw new TypeError(`unsupported URL scheme ${u.protocol}`);
        return u.toString();
    }
    /** The token of the next attempt or refresh: the option's value, or what its function returns. */
    async _getToken() {
        const t = this._opts.token;
        const v = typeof t === 'function' ? await t() : t;
        return v === undefined || v === null || v === '' ? undefined : String(v);
    }
    /** Makes one connection attempt (state connecting or reconnecting). */
    _open() {
        const gen = ++this._gen;
        let url;
        try {
            url = this._resolveURL();
        }
        catch (err) {
            // A bad URL: no attempt can succeed.
            this._attemptFailed({ code: 1006, reason: errText(err) }, 'connect_failed', true);
            return;
        }
        // The connect timeout covers getting the token too.
        this._connectTimer = setTimeout(() => {
            this._connectTimer = null;
            if (gen !== this._gen)
                return;
            this._lastClose = { code: 1006, reason: 'connect timeout', wasClean: false };
            this._notOpened();
            this._attemptFailed({ code: 1006, reason: `no connection within ${this._opts.connectTimeout} ms` }, 'connect_timeout');
        }, this._opts.connectTimeout);
        if (typeof this._opts.token === 'function') {
            this._getToken().then((token) => {
                if (gen === this._gen)
                    this._openTransport(gen, url, token);
            }, (err) => {
                if (gen !== this._gen)
                    return;
                this._emit('error', { code: 'token_failed', message: `sessionhub: the token function failed: ${errText(err)}` });
                this._attemptFailed({ code: 1006, reason: `the token function failed: ${errText(err)}` }, 'token_failed');
            });
        }
        else {
            const t = this._opts.token;
            this._openTransport(gen, url, t === undefined || t === null || t === '' ? undefined : String(t));
        }
    }
    /** The transport of the next attempt: SSE while the fallback holds (and the platform has EventSource and fetch), else the configured one. */
    _chooseTransport() {
        if (this._opts.fallback && Date.now() < this._sseUntil && sseAvailable(this._options))
            return { name: 'sse', factory: sseTransport };
        return { name: this._opts.fallback ? 'websocket' : typeof this._options.transport === 'function' ? 'custom' : 'websocket', factory: this._opts.transport };
    }
    /** The attempt in progress failed before it opened: WebSocket failures in a row start the fallback. */
    _notOpened() {
        const fb = this._opts.fallback;
        if (!fb)
            return;
        if (this._attemptTransport === 'sse') {
            // The stream failed too (the hub is down, or refuses this client): the
            // next attempt tries WebSocket, whose next failure comes back here.
            this._sseUntil = 0;
            return;
        }
        if (this._attemptTransport !== 'websocket')
            return;
        this._wsFailures += 1;
        // Kept at its count: after the fallback's time, one more failure is enough.
        if (this._wsFailures >= fb.after)
            this._sseUntil = Date.now() + fb.retryWebSocketAfter;
    }
    _openTransport(gen, url, token) {
        let opened = false;
        const chosen = this._chooseTransport();
        this._attemptTransport = chosen.name;
        const events = {
            open: () => {
                if (gen !== this._gen)
                    return;
                opened = true;
                this._clearTimer('_connectTimer');
                this._transport = chosen.name;
                if (chosen.name === 'websocket')
                    this._wsFailures = 0;
                this._opened();
            },
            message: (data) => {
                if (gen === this._gen)
                    this._onFrame(data);
            },
            close: (info) => {
                if (gen !== this._gen)
                    return;
                this._lastClose = info;
                this._conn = null;
                this._gen++;
                this._connectionEnded();
                if (opened)
                    this._dropped(info);
                else {
                    this._notOpened();
                    this._attemptFailed({ code: info.code, reason: info.reason }, 'connect_failed');
                }
            },
        };
        try {
            this._conn = chosen.factory({ url, token, batch: this._opts.batch, options: this._options }, events);
        }
        catch (err) {
            // No WebSocket, or a URL the implementation refuses: no attempt can succeed.
            this._conn = null;
            this._attemptFailed({ code: 1006, reason: errText(err) }, 'connect_failed', true);
        }
    }
    /** Ends the current connection (if any) with code and forgets it: no event of it is heard any more. */
    _endConnection(code, reason) {
        this._gen++;
        const conn = this._conn;
        this._conn = null;
        if (conn)
            conn.close(code, reason);
        this._connectionEnded();
    }
    /** Clears what belongs to one connection. */
    _connectionEnded() {
        this._ready = false;
        this._clearTimer('_connectTimer');
        this._clearTimer('_heartbeatTimer');
        this._clearTimer('_stableTimer');
        this._clearTimer('_refreshTimer');
        this._pingSent = 0;
    }
    /** A connection attempt succeeded. */
    _opened() {
        const reconnected = this._state === States.RECONNECTING;
        const attempt = this._attempt;
        this._lastError = null;
        this._lastReceived = Date.now();
        this._armHeartbeat(this._opts.heartbeatInterval);
        this._setState(States.CONNECTED);
        this._settleConnect();
        if (reconnected && this._membership)
            this._rejoin(attempt);
        else
            this._becomeReady();
    }
    /** A connection attempt failed before it opened. */
    _attemptFailed(close, code, hopeless = false) {
        this._endConnection(1000);
        const err = hubError(code, `sessionhub: could not connect to the hub (${describeClose(close)})`, { closeCode: close.code });
        this._lastError = err;
        if (!hopeless && this._opts.reconnect.maxAttempts >= 0) {
            this._emit('error', { code, message: err.message });
            if (this._state === States.CONNECTING || this._state === States.RECONNECTING)
                this._scheduleReconnect();
            return;
        }
        this._failRequests(() => hubError('connection_lost', 'sessionhub: the connection could not be made'));
        this._forgetSession();
        this._unlistenNetwork();
        this._setState(States.DISCONNECTED, close);
        this._settleConnect(err);
    }
    /** An open connection ended without close() being called. */
    _dropped(close) {
        this._failRequests(() => hubError('connection_lost', 'sessionhub: connection lost before the reply'), true);
        // A token that expired is not final when a new one can be had.
        const expired = close.code === 4001 && typeof this._opts.token === 'function';
        const final = (FINAL_CLOSE_CODES.includes(close.code) && !expired) || this._opts.reconnect.maxAttempts < 0;
        if (final) {
            this._giveUp({ code: close.code, reason: close.reason });
            return;
        }
        this._setState(States.RECONNECTING);
        this._scheduleReconnect();
    }
    /** Waits the backoff delay of the next attempt (or for `online`), or gives up after the last one. */
    _scheduleReconnect() {
        const { initial, factor, max, maxAttempts } = this._opts.reconnect;
        this._clearTimer('_reconnectTimer');
        if (maxAttempts > 0 && this._attempt >= maxAttempts) {
            this._giveUp({ attempts: this._attempt });
            return;
        }
        if (this._offline)
            return; // `online` makes the next attempt
        this._attempt += 1;
        // Full jitter: a random delay in [0, min(max, initial * factor^(n-1))].
        const bound = Math.min(max, initial * factor ** (this._attempt - 1));
        const delay = Math.random() * bound;
        this._reconnectTimer = setTimeout(() => {
            this._reconnectTimer = null;
            this._open();
        }, delay);
    }
    /** Ends in state 'disconnected': a final close code, or retrying gave up. */
    _giveUp(error) {
        this._clearTimer('_reconnectTimer');
        this._endConnection(1000);
        this._unlistenNetwork();
        this._failRequests(() => hubError('connection_lost', 'sessionhub: disconnected'));
        this._forgetSession();
        const message = 'attempts' in error
            ? `sessionhub: gave up after ${error.attempts} failed attempts${this._lastError ? ` (${this._lastError.message.replace(/^sessionhub: /, '')})` : ''}`
            : `sessionhub: disconnected by the hub (${describeClose(error)})`;
        const err = hubError(this._lastError && 'attempts' in error ? this._lastError.code : 'connection_lost', message, { detail: error });
        this._lastError = err;
        this._setState(States.DISCONNECTED, error);
        this._settleConnect(err);
    }
    /** Joins the last session again on a new connection, then lets requests through. */
    _rejoin(attempt) {
        const m = this._membership;
        const data = { sessionId: m.sessionId, userInfo: { ...m.userInfo } };
        if (m.presence)
            data.presence = m.presence;
        if (m.epoch !== undefined)
            data.recover = { epoch: m.epoch, offset: m.offset };
        const gen = this._gen;
        this._sendRequest('join-session', data, { join: data, rejoin: attempt }).then(() => {
            if (this._gen === gen)
                this._becomeReady();
        }, (err) => {
            // A refusal (for example session_full) leaves the client connected
            // outside any session; a dropped connection is retried by _dropped.
            if (err && err.code !== 'connection_lost' && err.code !== 'closed' && this._gen === gen) {
                this._forgetSession();
                this._becomeReady();
            }
        });
    }
    /** The connection is usable: sends what waited for it, and starts the clock of a stable connection. */
    _becomeReady() {
        if (!this._conn)
            return;
        this._ready = true;
        const queue = this._queue;
        this._queue = [];
        for (const q of queue)
            this._write(q.frame);
        this._syncActivity();
        if (this._cursorPending && this._cursorTimer === null)
            this._flushCursor();
        this._clearTimer('_stableTimer');
        this._stableTimer = setTimeout(() => {
            this._stableTimer = null;
            this._attempt = 0;
        }, this._opts.reconnect.resetAfter);
    }
    /**
     * Rejects the pending requests. With keepQueued (a dropped connection that
     * will be replaced) only those already sent: the queued ones wait for the
     * next connection.
     */
    _failRequests(makeErr, keepQueued = false) {
        const keep = new Set(keepQueued ? this._queue.map((q) => q.ref) : []);
        if (!keepQueued)
            this._queue = [];
        for (const [ref, p] of [...this._pending]) {
            if (keep.has(ref))
                continue;
            this._pending.delete(ref);
            p.reject(makeErr()); // a rejoin's own handler ignores connection_lost and closed
        }
    }
    // ----- internals: liveness, network, token refresh -----
    /** Arms the heartbeat check in ms. */
    _armHeartbeat(ms) {
        this._clearTimer('_heartbeatTimer');
        if (this._opts.heartbeatInterval <= 0)
            return;
        this._heartbeatTimer = setTimeout(() => this._heartbeatCheck(), Math.max(0, ms));
    }
    /**
     * Silence for heartbeatInterval: send a ping; no frame within
     * heartbeatTimeout after it: the connection is dead, replace it.
     */
    _heartbeatCheck() {
        this._heartbeatTimer = null;
        if (!this._conn || this._state !== States.CONNECTED)
            return;
        const now = Date.now();
        if (this._pingSent > 0) {
            if (this._lastReceived >= this._pingSent) {
                this._pingSent = 0;
            }
            else {
                const left = this._pingSent + this._opts.heartbeatTimeout - now;
                if (left > 0) {
                    this._armHeartbeat(left);
                    return;
                }
                const close = { code: 1006, reason: `no answer to a ping within ${this._opts.heartbeatTimeout} ms`, wasClean: false };
                this._endConnection(4000, 'heartbeat timeout');
                this._lastClose = close;
                this._dropped(close);
                return;
            }
        }
        const quiet = now - this._lastReceived;
        if (quiet < this._opts.heartbeatInterval) {
            this._armHeartbeat(this._opts.heartbeatInterval - quiet);
            return;
        }
        this._pingSent = now;
        // Not a request: any frame that arrives proves the connection alive, and
        // the pong (its ref unknown) is dispatched as a pong event like any other.
        this._write(this._frame('ping', { heartbeat: true }));
        this._armHeartbeat(this._opts.heartbeatTimeout);
    }
    /** Follows the browser's offline and online events while connecting or connected. */
    _listenNetwork() {
        const win = globalThis.window;
        if (!this._opts.network || !win || typeof win.addEventListener !== 'function' || this._netListeners.length > 0)
            return;
        const nav = globalThis.navigator;
        this._offline = !!nav && nav.onLine === false;
        const onOffline = () => this._goOffline();
        const onOnline = () => this._goOnline();
        win.addEventListener('offline', onOffline);
        win.addEventListener('online', onOnline);
        this._netListeners.push(() => win.removeEventListener('offline', onOffline), () => win.removeEventListener('online', onOnline));
    }
    _unlistenNetwork() {
        for (const remove of this._netListeners)
            remove();
        this._netListeners = [];
        this._offline = false;
    }
    /** `offline`: the connection is of no use; reconnecting, with no attempt until `online`. */
    _goOffline() {
        this._offline = true;
        this._clearTimer('_reconnectTimer');
        if (this._state === States.CONNECTED) {
            const close = { code: 1006, reason: 'the browser went offline', wasClean: false };
            this._endConnection(4000, 'offline');
            this._lastClose = close;
            this._dropped(close);
        }
        else if (this._state === States.CONNECTING || this._state === States.RECONNECTING) {
            this._endConnection(4000, 'offline'); // the attempt in flight cannot succeed
        }
    }
    /** `online`: reconnect at once, without waiting out the backoff. */
    _goOnline() {
        this._offline = false;
        if ((this._state === States.CONNECTING || this._state === States.RECONNECTING) && !this._conn) {
            this._clearTimer('_reconnectTimer');
            this._attempt += 1;
            this._open();
        }
    }
    /**
     * With a token function and an expiresAt: refresh ahead of it, at the
     * latest REFRESH_AHEAD before, or at 90 % of the remaining lifetime for
     * short tokens.
     */
    _scheduleRefresh() {
        this._clearTimer('_refreshTimer');
        if (typeof this._opts.token !== 'function' || !this._expiresAt || !this._conn)
            return;
        const left = msUntil(this._expiresAt);
        if (!(left > 0))
            return;
        const delay = left >= 2 * REFRESH_AHEAD ? left - REFRESH_AHEAD : 0.9 * left;
        const gen = this._gen;
        this._refreshTimer = setTimeout(() => {
            this._refreshTimer = null;
            if (gen !== this._gen)
                return;
            this.refreshToken().catch((err) => {
                if (gen !== this._gen || !err || err.code === 'connection_lost' || err.code === 'closed')
                    return;
                this._emit('error', { code: err.code === 'token_failed' ? 'token_failed' : err.code, message: err.message });
                // Try again halfway to the expiry; past it, the hub's 4001 makes the client reconnect with a new token.
                const rest = this._expiresAt ? msUntil(this._expiresAt) : NaN;
                if (rest > 1000 && this._conn) {
                    this._refreshTimer = setTimeout(() => {
                        this._refreshTimer = null;
                        if (gen === this._gen)
                            this._scheduleRefreshNow();
                    }, rest / 2);
                }
            });
        }, delay);
    }
    _scheduleRefreshNow() {
        this.refreshToken().catch(noop);
    }
    // ----- internals: sending -----
    _frame(type, data, ref) {
        const msg = { type };
        if (data !== undefined)
            msg.data = data;
        if (ref !== undefined)
            msg.ref = ref;
        return JSON.stringify(msg);
    }
    _write(frame) {
        const conn = this._conn;
        if (!conn)
            return false;
        try {
            conn.send(frame);
            return true;
        }
        catch {
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
        }
        catch (err) {
            return Promise.reject(hubError('bad_request', `sessionhub: cannot encode ${type}: ${errText(err)}`));
        }
        return new Promise((resolve, reject) => {
            this._pending.set(ref, { type, resolve, reject, ...extra });
            if (queue)
                this._queue.push({ frame, ref });
            else
                this._write(frame);
        });
    }
    /** Sends the waiting cursor position and opens a throttle window. */
    _flushCursor() {
        if (!this._ready || !this._cursorPending)
            return; // sent by _becomeReady
        const c = this._cursorPending;
        this._cursorPending = null;
        if (this._write(this._frame('cursor-update', c)))
            this._patchSelf({ cursor: c });
        if (this._opts.cursorThrottle > 0) {
            this._cursorTimer = setTimeout(() => {
                this._cursorTimer = null;
                this._flushCursor(); // trailing edge: the latest position, if one came within the window
            }, this._opts.cursorThrottle);
        }
    }
    _sendActivity(isActive) {
        if (this._write(this._frame('activity-status', { isActive })))
            this._patchSelf({ isActive });
    }
    /** In a session, tells the server the wanted activity if its list says otherwise. */
    _syncActivity() {
        if (!this._ready || !this._sessionId || this._wantActive === null)
            return;
        const self = this._participants.find((p) => p.userId === this._selfId);
        if (!self || self.isActive !== this._wantActive)
            this._sendActivity(this._wantActive);
    }
    // ----- internals: receiving -----
    /** One frame: one message, or several separated by '\n' (sessionhub.batch). */
    _onFrame(raw) {
        this._lastReceived = Date.now();
        if (typeof raw !== 'string') {
            this._badInput('binary frame from the server');
            return;
        }
        for (const line of raw.split('\n')) {
            if (line.trim() !== '')
                this._onMessage(line);
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
        }
        catch (err) {
            this._badInput(`not JSON: ${errText(err)}`);
            return;
        }
        if (!isObject(msg)) {
            this._badInput('not a JSON object');
            return;
        }
        const { type, ref } = msg;
        const data = (msg.data === undefined || msg.data === null ? {} : msg.data);
        const check = isString(type) && Object.hasOwn(SERVER_MESSAGES, type) ? SERVER_MESSAGES[type] : null;
        let p = null;
        if (isString(ref) && this._pending.has(ref)) {
            p = this._pending.get(ref);
            this._pending.delete(ref);
        }
        if (!check) {
            this._badInput(`unknown message type ${JSON.stringify(type)}`);
            if (p)
                p.reject(hubError('bad_server_message', `sessionhub: unexpected reply ${JSON.stringify(type)}`));
            return;
        }
        if (!isObject(data) || !check(data)) {
            this._badInput(`invalid ${type} data`);
            if (p)
                p.reject(hubError('bad_server_message', `sessionhub: invalid ${type} from the server`));
            return;
        }
        if (p && type !== 'error' && REPLY_TYPE[p.type] !== type) {
            this._badInput(`${type} does not answer ${p.type}`);
            p.reject(hubError('bad_server_message', `sessionhub: unexpected reply ${type} to ${p.type}`));
            return;
        }
        this._handle(type, data, isString(ref) ? ref : undefined, p);
    }
    _handle(type, data, ref, p) {
        switch (type) {
            case 'session-joined': {
                const d = data;
                if (p && p.join) {
                    const { userInfo, presence, recover } = p.join;
                    const epoch = isString(d.epoch) ? d.epoch : undefined;
                    // A recovered rejoin keeps the offset it asked from: the replay of
                    // what was missed follows and advances it. A first join or a fresh
                    // start (recovered: false) starts from the session's offset: the
                    // events before it are not coming.
                    const recovered = d.recovered === true && recover && recover.epoch === epoch;
                    this._membership = {
                        sessionId: d.sessionId,
                        userInfo: { ...userInfo, userId: d.selfId },
                        presence,
                        epoch,
                        offset: recovered && recover ? recover.offset : isNumber(d.offset) ? d.offset : 0,
                    };
                }
                this._sessionId = d.sessionId;
                this._selfId = d.selfId;
                if (isString(d.expiresAt)) {
                    this._expiresAt = d.expiresAt;
                    this._scheduleRefresh();
                }
                this._emit(type, data);
                this._setParticipants(d.participants); // already in the server's order
                if (p && p.rejoin !== undefined)
                    this._emit('rejoined', { ...data, attempt: p.rejoin });
                else if (p && this._ready)
                    this._syncActivity();
                break;
            }
            case 'session-left':
                this._emit(type, data);
                this._forgetSession();
                break;
            case 'user-joined': {
                const d = data;
                this._emit(type, data);
                if (d.participants)
                    this._setParticipants(d.participants);
                else
                    this._setParticipants([...this._participants.filter((x) => x.userId !== d.user.userId), d.user].sort(compareParticipants));
                break;
            }
            case 'user-left': {
                const d = data;
                this._emit(type, data);
                if (d.participants)
                    this._setParticipants(d.participants);
                else
                    this._setParticipants(this._participants.filter((x) => x.userId !== d.userId));
                break;
            }
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
                if (this._seen(data.offset))
                    this._emit(type, data);
                break;
            case 'ack':
                this._seen(data.offset);
                this._emit(type, data);
                break;
            case 'pong':
                this._emit(type, data);
                break;
            case 'token-refreshed':
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
        if (p)
            p.resolve(data);
    }
    /**
     * Records a broadcast offset seen in the session, for the recover of a
     * rejoin. Returns false for an offset not above the last one seen (already
     * delivered, or our own acked broadcast); true otherwise, and outside a
     * session or for a broadcast without an offset.
     */
    _seen(offset) {
        const m = this._membership;
        if (!m || !isNumber(offset))
            return true;
        if (offset <= m.offset)
            return false;
        m.offset = offset;
        return true;
    }
    _setParticipants(list) {
        this._participants = freezeList(list);
        this._emit('participants', this._participants);
    }
    _patchParticipant(userId, patch) {
        const i = this._participants.findIndex((x) => x.userId === userId);
        if (i < 0)
            return;
        const list = this._participants.slice();
        list[i] = { ...list[i], ...patch };
        this._setParticipants(list);
    }
    /** The server does not echo our own cursor and activity: keep our entry current. */
    _patchSelf(patch) {
        if (this._selfId)
            this._patchParticipant(this._selfId, patch);
    }
    /** Forgets the session (no rejoin) and clears participants (with an event if there were any). */
    _forgetSession() {
        this._membership = null;
        this._sessionId = null;
        this._selfId = null;
        this._expiresAt = null;
        this._clearTimer('_refreshTimer');
        if (this._participants.length > 0)
            this._setParticipants([]);
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
        if (!doc || !win || !this._opts.activity)
            return; // not in a browser: nothing to watch
        const idleAfter = this._opts.activity.idleAfter;
        const a = { lastInput: Date.now(), timer: null, listeners: [] };
        this._activity = a;
        const visible = () => doc.visibilityState !== 'hidden';
        const armIdle = (ms) => {
            if (a.timer !== null)
                clearTimeout(a.timer);
            a.timer = setTimeout(onIdleCheck, ms);
        };
        const onIdleCheck = () => {
            a.timer = null;
            const left = idleAfter - (Date.now() - a.lastInput);
            if (left > 0)
                armIdle(left);
            else
                this._monitorSays(false);
        };
        const onInput = () => {
            a.lastInput = Date.now();
            if (a.timer === null)
                armIdle(idleAfter); // only re-armed after it fired: cheap for pointermove
            if (visible() && this._wantActive !== true)
                this._monitorSays(true);
        };
        const onVisibility = () => {
            if (visible())
                onInput();
            else
                this._monitorSays(false);
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
        if (!a)
            return;
        if (a.timer !== null)
            clearTimeout(a.timer);
        a.timer = null;
        for (const remove of a.listeners)
            remove();
        a.listeners = [];
        this._activity = null;
    }
    /** The monitor's view changed: only a change is sent, and only in a session. */
    _monitorSays(isActive) {
        if (this._wantActive === isActive)
            return;
        this._wantActive = isActive;
        this._syncActivity();
    }
}
/** The message of an error, or the thing itself as text. */
function errText(err) {
    return err && typeof err.message === 'string' ? err.message : String(err);
}
/** A close, in words a person can act on. */
function describeClose(close) {
    if (close.code === 1006 && close.reason)
        return close.reason;
    if (close.code === 1006)
        return 'the connection failed: the hub is down or unreachable, or it refused the upgrade (401 without a valid token, 403 for this origin)';
    const known = {
        1000: 'closed normally',
        1001: 'the hub is going away',
        1003: 'binary frame refused',
        1008: 'policy violation (sustained rate abuse)',
        1009: 'message too large',
        1011: 'internal error of the hub',
        1013: 'too slow to read (slow consumer)',
        4001: 'token expired',
        4003: 'removed by the server API',
    };
    const what = known[close.code] || 'closed';
    return `${close.code} ${what}${close.reason ? `: ${close.reason}` : ''}`;
}
export default HubClient;
