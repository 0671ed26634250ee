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
    const fail = (reason) => finish({ code: 1006, reason, wasClean: false });
    const postBody = (body, keepalive = false) => post(sendURL, { method: 'POST', headers: { 'Content-Type': 'text/plain' }, body, keepalive });
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
            fail(`bad open event: ${errText(err)}`);
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
    es.onerror = () => fail('stream lost');
    const pump = () => {
        if (inFlight || done || queue.length === 0)
            return;
        const batch = queue.splice(0, MAX_SEND_MESSAGES);
        inFlight = true;
        const body = `{"streamId":${JSON.stringify(streamId)},"messages":[${batch.join(',')}]}`;
        postBody(body).then((res) => {
            inFlight = false;
            if (res.status !== 202)
                fail(`send answered ${res.status}`);
            else
                pump();
        }, (err) => {
            inFlight = false;
            fail(`send failed: ${errText(err)}`);
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
                postBody(JSON.stringify({ streamId, close: 1000 }), true).catch(noop);
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
/** An Error with a `code` (a server error code, or one of the client's own) and the message `sessionhub: ${message}`. */
function hubError(code, message, extra) {
    const err = new Error(`sessionhub: ${message}`);
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
    #url;
    #options;
    // The options, resolved with their defaults (see HubClientOptions).
    #connectTimeout;
    #heartbeatInterval;
    #heartbeatTimeout;
    #reconnect;
    #cursorThrottle;
    #idleAfter; // 0: no activity monitor
    #token;
    #batch;
    #network;
    #factory;
    #fallback; // null: no fallback (off, or a transport of the caller's)
    #state = States.IDLE;
    #conn = null; // the current connection (connecting or open)
    #gen = 0; // bumped for every attempt and every end of one: stale callbacks compare it
    #ready = false; // requests may be sent on #conn (it is open and any rejoin is done)
    // The client's timers: connect (the attempt's timeout), reconnect (the
    // backoff), stable (the attempt counter's reset), heartbeat, refresh (the
    // token's), cursor (the throttle window, open while it runs).
    #timers = { connect: null, reconnect: null, stable: null, heartbeat: null, refresh: null, cursor: null, probe: null, idle: null };
    #lastReceived = 0; // Date.now() of the last frame received
    #pingSent = 0; // Date.now() of the heartbeat ping in flight, 0 when none
    #attempt = 0; // failed attempts since the client last had a stable connection
    #connectWaiters = [];
    #nextRef = 0;
    #pending = new Map();
    #queue = []; // requests made while not ready
    #lastClose = null;
    #lastError = null;
    #expiresAt = null;
    #offline = false;
    #net = null; // aborting it removes the offline and online listeners
    #transport = null; // of the current or last open connection
    #attemptTransport = 'websocket'; // of the attempt in progress
    #wsFailures = 0; // WebSocket attempts in a row that failed before they opened
    #sseUntil = 0; // Date.now() until which attempts use SSE
    #probe = null; // a WebSocket tried while connected over SSE
    // The session, as needed to join it again after a reconnect.
    #membership = null;
    #sessionId = null;
    #selfId = null;
    #participants = Object.freeze([]);
    // Cursor throttle.
    #cursorPending = null; // the latest position not sent yet
    // Activity: what the page (or the activity monitor) wants the server to know.
    #wantActive = null; // null until setActive() or the monitor says something
    #activity = null; // the monitor's listeners: aborting it removes them
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
        this.#url = url;
        this.#options = o;
        const initial = positive(r.initial, 500);
        this.#connectTimeout = positive(o.connectTimeout, 20000);
        this.#heartbeatInterval = nonNegative(o.heartbeatInterval, 25000);
        this.#heartbeatTimeout = positive(o.heartbeatTimeout, 10000);
        this.#reconnect = {
            initial,
            factor: isNumber(r.factor) && r.factor >= 1 ? r.factor : 2,
            max: Math.max(initial, positive(r.max, 10000)),
            // 0 = forever; -1 (reconnect: false) = never.
            maxAttempts: isNumber(r.maxAttempts) ? Math.max(-1, Math.floor(r.maxAttempts)) : 5,
            resetAfter: nonNegative(r.resetAfter, 10000),
        };
        this.#cursorThrottle = nonNegative(o.cursorThrottle, 50);
        this.#idleAfter = o.activity ? positive(isObject(o.activity) ? o.activity.idleAfter : undefined, 60000) : 0;
        this.#token = o.token;
        this.#batch = o.batch !== false;
        this.#network = o.network !== false;
        this.#factory = typeof o.transport === 'function' ? o.transport : webSocketTransport;
        const fb = isObject(o.fallback) ? o.fallback : {};
        this.#fallback =
            o.fallback === false || typeof o.transport === 'function'
                ? null
                : { after: positive(fb.after, 2), retryWebSocketAfter: nonNegative(fb.retryWebSocketAfter, 60000) };
        if (this.#idleAfter)
            this.#startActivityMonitor();
    }
    // ----- public state -----
    /**
     * The transport of the current connection (or of the last one): 'websocket',
     * 'sse' (the fallback) or 'custom' (options.transport); null before the first opened.
     */
    get transport() {
        return this.#transport;
    }
    /** 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'disconnected' | 'closed' */
    get state() {
        return this.#state;
    }
    /** The userId the server uses for this client, after a join; null outside a session. */
    get selfId() {
        return this.#selfId;
    }
    /** The session this client is in; null outside a session. */
    get sessionId() {
        return this.#sessionId;
    }
    /** The session's participants (frozen; a new array on every change), ordered as the server orders them. */
    get participants() {
        return this.#participants;
    }
    /** The code and reason of the last close of a connection: {code, reason, wasClean}, or null. */
    get lastClose() {
        return this.#lastClose;
    }
    /**
     * Why the last connection attempt failed, or why the client gave up (a
     * HubError with a readable message); null once a connection is open.
     */
    get lastError() {
        return this.#lastError;
    }
    /** Token mode: when the connection's token expires (RFC 3339), as the hub last said; null when unknown. */
    get expiresAt() {
        return this.#expiresAt;
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
        switch (this.#state) {
            case States.CONNECTED:
                return Promise.resolve();
            case States.CLOSED:
                return Promise.reject(hubError('closed', 'the client is closed'));
            case States.CONNECTING:
            case States.RECONNECTING:
                return new Promise((resolve, reject) => this.#connectWaiters.push({ resolve, reject }));
            default: // idle, disconnected
        }
        const p = new Promise((resolve, reject) => this.#connectWaiters.push({ resolve, reject }));
        this.#attempt = 0;
        this.#lastError = null;
        this.#listenNetwork();
        this.#setState(States.CONNECTING);
        this.#open();
        return p;
    }
    /**
     * Closes the connection with 1000 and stops reconnecting, for good: state
     * 'closed'. Pending and waiting requests are rejected (code 'closed'); every
     * timer and listener of the client is removed. Idempotent.
     */
    close() {
        if (this.#state === States.CLOSED)
            return;
        this.#endConnection(1000);
        this.#clearTimer('reconnect');
        this.#clearTimer('cursor');
        this.#cursorPending = null;
        this.#stopActivityMonitor();
        this.#unlistenNetwork();
        this.#failRequests(() => hubError('closed', 'the client was closed'));
        this.#forgetSession();
        this.#setState(States.CLOSED);
        this.#settleConnect(hubError('closed', 'the client was closed'));
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
        return this.#request('join-session', data, { join: data });
    }
    /** Leaves the session (succeeds outside a session too). */
    async leave() {
        await this.#request('leave-session', undefined);
    }
    /**
     * Sends event with payload to the session's participants addressed by `to`
     * ('all', 'instructors', 'learners' or a userId). Resolves with the broadcast's offset.
     */
    async broadcast(event, payload, to = 'all') {
        const ack = await this.#request('broadcast', { event, payload: payload === undefined ? null : payload, to });
        return ack.offset;
    }
    /** Sends an application-level ping. Resolves with the round-trip time in ms. */
    async ping() {
        const now = () => (globalThis.performance ? performance.now() : Date.now());
        const start = now();
        await this.#request('ping', {});
        return now() - start;
    }
    /**
     * Token mode: gets a token (from the token option) and hands it to the hub
     * on the live connection (`refresh-token`). Resolves with the new expiresAt
     * (RFC 3339, or null when the token has none). The client does this by
     * itself ahead of expiresAt when the token comes from a function.
     */
    async refreshToken() {
        const token = await this.#getToken();
        if (!token)
            throw hubError('token_failed', 'no token to refresh with');
        const d = await this.#request('refresh-token', { token });
        const exp = isString(d.expiresAt) ? d.expiresAt : null;
        this.#expiresAt = exp;
        this.#scheduleRefresh();
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
        if (this.#state === States.CLOSED || !isObject(cursor))
            return;
        const c = { line: cursor.line, column: cursor.column };
        if (cursor.file !== undefined && cursor.file !== null)
            c.file = cursor.file;
        if (cursor.selection)
            c.selection = cursor.selection;
        this.#cursorPending = c;
        if (this.#timers.cursor === null)
            this.#flushCursor();
    }
    /**
     * Tells the other participants whether the user is active (activity-status).
     * Sent at once when connected and in a session; otherwise remembered and sent
     * after the next join or rejoin if the server's list says otherwise.
     */
    setActive(isActive) {
        if (this.#state === States.CLOSED)
            return;
        this.#wantActive = !!isActive;
        if (this.#ready && this.#sessionId)
            this.#sendActivity(this.#wantActive);
    }
    // ----- internals: connection lifecycle -----
    /** Arms timer name, replacing it: fn runs after ms unless the timer is cleared first. */
    #after(name, ms, fn) {
        this.#clearTimer(name);
        this.#timers[name] = setTimeout(() => {
            this.#timers[name] = null;
            fn();
        }, ms);
    }
    #clearTimer(name) {
        const t = this.#timers[name];
        if (t !== null)
            clearTimeout(t);
        this.#timers[name] = null;
    }
    #setState(to, error) {
        const from = this.#state;
        if (from === to)
            return;
        this.#state = to;
        const detail = { from, to };
        if (error !== undefined)
            detail.error = error;
        this.#emit('statechange', detail);
    }
    #emit(type, detail) {
        this.dispatchEvent(new CustomEvent(type, { detail }));
    }
    /** Resolves (err undefined) or rejects every connect() waiting. */
    #settleConnect(err) {
        const waiters = this.#connectWaiters;
        this.#connectWaiters = [];
        for (const w of waiters) {
            if (err)
                w.reject(err);
            else
                w.resolve();
        }
    }
    /** The endpoint: the given URL (or the page's /ws), as ws: or wss:. Throws a TypeError when it cannot. */
    #resolveURL() {
        const loc = globalThis.location;
        let raw = this.#url;
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
    async #getToken() {
        const t = this.#token;
        return tokenText(typeof t === 'function' ? await t() : t);
    }
    /**
     * Calls use with the token of an attempt made in gen: at once for a token
     * value, or once the token function resolves; failed when it fails. Neither
     * is called when gen is stale by then.
     */
    #withToken(gen, use, failed) {
        if (typeof this.#token !== 'function') {
            use(tokenText(this.#token));
            return;
        }
        this.#getToken().then((token) => {
            if (gen === this.#gen)
                use(token);
        }, (err) => {
            if (gen === this.#gen)
                failed(err);
        });
    }
    /** Makes one connection attempt (state connecting or reconnecting). */
    #open() {
        const gen = ++this.#gen;
        let url;
        try {
            url = this.#resolveURL();
        }
        catch (err) {
            // A bad URL: no attempt can succeed.
            this.#attemptFailed({ code: 1006, reason: errText(err) }, 'connect_failed', true);
            return;
        }
        // The connect timeout covers getting the token too.
        this.#after('connect', this.#connectTimeout, () => {
            if (gen !== this.#gen)
                return;
            this.#lastClose = { code: 1006, reason: 'connect timeout', wasClean: false };
            this.#notOpened();
            this.#attemptFailed({ code: 1006, reason: `no connection within ${this.#connectTimeout} ms` }, 'connect_timeout');
        });
        this.#withToken(gen, (token) => this.#openTransport(gen, url, token), (err) => {
            const reason = `the token function failed: ${errText(err)}`;
            this.#emit('error', { code: 'token_failed', message: `sessionhub: ${reason}` });
            this.#attemptFailed({ code: 1006, reason }, 'token_failed');
        });
    }
    /** The transport of the next attempt: SSE while the fallback holds (and the platform has EventSource and fetch), else the configured one. */
    #chooseTransport() {
        if (this.#fallback && Date.now() < this.#sseUntil && sseAvailable(this.#options))
            return { name: 'sse', factory: sseTransport };
        return { name: this.#fallback ? 'websocket' : typeof this.#options.transport === 'function' ? 'custom' : 'websocket', factory: this.#factory };
    }
    /** The attempt in progress failed before it opened: WebSocket failures in a row start the fallback. */
    #notOpened() {
        const fb = this.#fallback;
        if (!fb)
            return;
        if (this.#attemptTransport === 'sse') {
            // The stream failed too (the hub is down, or refuses this client): the
            // next attempt tries WebSocket, whose next failure comes back here.
            this.#sseUntil = 0;
            return;
        }
        if (this.#attemptTransport !== 'websocket')
            return;
        this.#wsFailures += 1;
        // Kept at its count: after the fallback's time, one more failure is enough.
        if (this.#wsFailures >= fb.after)
            this.#sseUntil = Date.now() + fb.retryWebSocketAfter;
    }
    #openTransport(gen, url, token) {
        let opened = false;
        const chosen = this.#chooseTransport();
        this.#attemptTransport = chosen.name;
        const events = {
            open: () => {
                if (gen !== this.#gen)
                    return;
                opened = true;
                this.#clearTimer('connect');
                this.#transport = chosen.name;
                if (chosen.name === 'websocket')
                    this.#wsFailures = 0;
                this.#opened();
                if (chosen.name === 'sse')
                    this.#armProbe();
            },
            message: (data) => {
                if (gen === this.#gen)
                    this.#onFrame(data);
            },
            close: (info) => {
                if (gen !== this.#gen)
                    return;
                this.#lastClose = info;
                this.#conn = null;
                this.#gen++;
                this.#connectionEnded();
                if (opened)
                    this.#dropped(info);
                else {
                    this.#notOpened();
                    this.#attemptFailed({ code: info.code, reason: info.reason }, 'connect_failed');
                }
            },
        };
        try {
            this.#conn = chosen.factory({ url, token, batch: this.#batch, options: this.#options }, events);
        }
        catch (err) {
            // No WebSocket, or a URL the implementation refuses: no attempt can succeed.
            this.#conn = null;
            this.#attemptFailed({ code: 1006, reason: errText(err) }, 'connect_failed', true);
        }
    }
    /** Ends the current connection (if any) with code and forgets it: no event of it is heard any more. */
    #endConnection(code, reason) {
        this.#gen++;
        const conn = this.#conn;
        this.#conn = null;
        if (conn)
            conn.close(code, reason);
        this.#connectionEnded();
    }
    /** Clears what belongs to one connection. */
    #connectionEnded() {
        this.#ready = false;
        this.#clearTimer('connect');
        this.#clearTimer('heartbeat');
        this.#clearTimer('stable');
        this.#clearTimer('refresh');
        this.#clearTimer('probe');
        if (this.#probe) {
            this.#probe.close(1000);
            this.#probe = null;
        }
        this.#pingSent = 0;
    }
    /** On SSE: tries WebSocket again once fallback.retryWebSocketAfter has passed. */
    #armProbe() {
        const fb = this.#fallback;
        if (!fb)
            return;
        this.#after('probe', Math.max(0, this.#sseUntil - Date.now()), () => this.#probeWebSocket());
    }
    /**
     * While connected over SSE, opens a WebSocket beside it (and closes it at
     * once). When it opens, the network lets WebSockets through again: the
     * client drops the stream (the hub's leave grace covers the switch) and
     * reconnects over WebSocket, rejoining with recovery. When it fails, the
     * client stays on SSE and tries again after fallback.retryWebSocketAfter.
     */
    #probeWebSocket() {
        const fb = this.#fallback;
        if (!fb || this.#state !== States.CONNECTED || this.#transport !== 'sse')
            return;
        const gen = this.#gen;
        let url;
        try {
            url = this.#resolveURL();
        }
        catch {
            return;
        }
        const again = () => {
            this.#sseUntil = Date.now() + fb.retryWebSocketAfter;
            this.#armProbe();
        };
        const start = (token) => {
            if (gen !== this.#gen)
                return;
            let settled = false;
            const finish = (opened) => {
                if (settled)
                    return;
                settled = true;
                this.#clearTimer('probe');
                const probe = this.#probe;
                this.#probe = null;
                if (probe)
                    probe.close(1000);
                if (gen !== this.#gen)
                    return;
                if (!opened) {
                    again();
                    return;
                }
                this.#wsFailures = 0;
                this.#sseUntil = 0;
                this.#switchToWebSocket();
            };
            this.#after('probe', this.#connectTimeout, () => finish(false));
            try {
                this.#probe = webSocketTransport({ url, token, batch: false, options: this.#options }, { open: () => finish(true), message: noop, close: () => finish(false) });
            }
            catch {
                finish(false);
            }
        };
        this.#withToken(gen, start, again);
    }
    /** Leaves the SSE stream for a WebSocket: a drop (no close send: the leave grace covers it), then a reconnect. */
    #switchToWebSocket() {
        // The stream's close(1001) tells the hub nothing: a drop.
        this.#abandon(1001, undefined, { code: 1001, reason: 'back to WebSocket', wasClean: false });
    }
    /** Ends the open connection with code and reason, and handles it as the drop close. */
    #abandon(code, reason, close) {
        this.#endConnection(code, reason);
        this.#lastClose = close;
        this.#dropped(close);
    }
    /** A connection attempt succeeded. */
    #opened() {
        const reconnected = this.#state === States.RECONNECTING;
        const attempt = this.#attempt;
        this.#lastError = null;
        this.#lastReceived = Date.now();
        this.#armHeartbeat(this.#heartbeatInterval);
        this.#setState(States.CONNECTED);
        this.#settleConnect();
        if (reconnected && this.#membership)
            this.#rejoin(attempt);
        else
            this.#becomeReady();
    }
    /** A connection attempt failed before it opened. */
    #attemptFailed(close, code, hopeless = false) {
        this.#endConnection(1000);
        const err = hubError(code, `could not connect to the hub (${describeClose(close)})`, { closeCode: close.code });
        this.#lastError = err;
        if (!hopeless && this.#reconnect.maxAttempts >= 0) {
            this.#emit('error', { code, message: err.message });
            if (this.#state === States.CONNECTING || this.#state === States.RECONNECTING)
                this.#scheduleReconnect();
            return;
        }
        this.#failRequests(() => hubError('connection_lost', 'the connection could not be made'));
        this.#forgetSession();
        this.#unlistenNetwork();
        this.#setState(States.DISCONNECTED, close);
        this.#settleConnect(err);
    }
    /** An open connection ended without close() being called. */
    #dropped(close) {
        this.#failRequests(() => hubError('connection_lost', 'connection lost before the reply'), true);
        // A token that expired is not final when a new one can be had.
        const expired = close.code === 4001 && typeof this.#token === 'function';
        const final = (FINAL_CLOSE_CODES.includes(close.code) && !expired) || this.#reconnect.maxAttempts < 0;
        if (final) {
            this.#giveUp({ code: close.code, reason: close.reason });
            return;
        }
        this.#setState(States.RECONNECTING);
        this.#scheduleReconnect();
    }
    /** Waits the backoff delay of the next attempt (or for `online`), or gives up after the last one. */
    #scheduleReconnect() {
        const { initial, factor, max, maxAttempts } = this.#reconnect;
        this.#clearTimer('reconnect');
        if (maxAttempts > 0 && this.#attempt >= maxAttempts) {
            this.#giveUp({ attempts: this.#attempt });
            return;
        }
        if (this.#offline)
            return; // `online` makes the next attempt
        this.#attempt += 1;
        // Full jitter: a random delay in [0, min(max, initial * factor^(n-1))].
        const bound = Math.min(max, initial * factor ** (this.#attempt - 1));
        const delay = Math.random() * bound;
        this.#after('reconnect', delay, () => this.#open());
    }
    /** Ends in state 'disconnected': a final close code, or retrying gave up. */
    #giveUp(error) {
        this.#clearTimer('reconnect');
        this.#endConnection(1000);
        this.#unlistenNetwork();
        this.#failRequests(() => hubError('connection_lost', 'disconnected'));
        this.#forgetSession();
        const message = 'attempts' in error
            ? `sessionhub: gave up after ${error.attempts} failed attempts${this.#lastError ? ` (${this.#lastError.message.replace(/^sessionhub: /, '')})` : ''}`
            : `sessionhub: disconnected by the hub (${describeClose(error)})`;
        const err = hubError(this.#lastError && 'attempts' in error ? this.#lastError.code : 'connection_lost', message, { detail: error });
        this.#lastError = err;
        this.#setState(States.DISCONNECTED, error);
        this.#settleConnect(err);
    }
    /** Joins the last session again on a new connection, then lets requests through. */
    #rejoin(attempt) {
        const m = this.#membership;
        const data = { sessionId: m.sessionId, userInfo: { ...m.userInfo } };
        if (m.presence)
            data.presence = m.presence;
        if (m.epoch !== undefined)
            data.recover = { epoch: m.epoch, offset: m.offset };
        const gen = this.#gen;
        this.#sendRequest('join-session', data, { join: data, rejoin: attempt }).then(() => {
            if (this.#gen === gen)
                this.#becomeReady();
        }, (err) => {
            // A refusal (for example session_full) leaves the client connected
            // outside any session; a dropped connection is retried by _dropped.
            if (err && err.code !== 'connection_lost' && err.code !== 'closed' && this.#gen === gen) {
                this.#forgetSession();
                this.#becomeReady();
            }
        });
    }
    /** The connection is usable: sends what waited for it, and starts the clock of a stable connection. */
    #becomeReady() {
        if (!this.#conn)
            return;
        this.#ready = true;
        const queue = this.#queue;
        this.#queue = [];
        for (const q of queue)
            this.#write(q.frame);
        this.#syncActivity();
        if (this.#cursorPending && this.#timers.cursor === null)
            this.#flushCursor();
        this.#after('stable', this.#reconnect.resetAfter, () => {
            this.#attempt = 0;
        });
    }
    /**
     * Rejects the pending requests. With keepQueued (a dropped connection that
     * will be replaced) only those already sent: the queued ones wait for the
     * next connection.
     */
    #failRequests(makeErr, keepQueued = false) {
        const keep = new Set(keepQueued ? this.#queue.map((q) => q.ref) : []);
        if (!keepQueued)
            this.#queue = [];
        for (const [ref, p] of [...this.#pending]) {
            if (keep.has(ref))
                continue;
            this.#pending.delete(ref);
            p.reject(makeErr()); // a rejoin's own handler ignores connection_lost and closed
        }
    }
    // ----- internals: liveness, network, token refresh -----
    /** Arms the heartbeat check in ms. */
    #armHeartbeat(ms) {
        this.#clearTimer('heartbeat');
        if (this.#heartbeatInterval <= 0)
            return;
        this.#after('heartbeat', Math.max(0, ms), () => this.#heartbeatCheck());
    }
    /**
     * Silence for heartbeatInterval: send a ping; no frame within
     * heartbeatTimeout after it: the connection is dead, replace it.
     */
    #heartbeatCheck() {
        if (!this.#conn || this.#state !== States.CONNECTED)
            return;
        const now = Date.now();
        if (this.#pingSent > 0) {
            if (this.#lastReceived >= this.#pingSent) {
                this.#pingSent = 0;
            }
            else {
                const left = this.#pingSent + this.#heartbeatTimeout - now;
                if (left > 0) {
                    this.#armHeartbeat(left);
                    return;
                }
                this.#abandon(4000, 'heartbeat timeout', { code: 1006, reason: `no answer to a ping within ${this.#heartbeatTimeout} ms`, wasClean: false });
                return;
            }
        }
        const quiet = now - this.#lastReceived;
        if (quiet < this.#heartbeatInterval) {
            this.#armHeartbeat(this.#heartbeatInterval - quiet);
            return;
        }
        this.#pingSent = now;
        // Not a request: any frame that arrives proves the connection alive, and
        // the pong (its ref unknown) is dispatched as a pong event like any other.
        this.#write(this.#frame('ping', { heartbeat: true }));
        this.#armHeartbeat(this.#heartbeatTimeout);
    }
    /** Follows the browser's offline and online events while connecting or connected. */
    #listenNetwork() {
        const win = globalThis.window;
        if (!this.#network || !win || typeof win.addEventListener !== 'function' || this.#net)
            return;
        const nav = globalThis.navigator;
        this.#offline = !!nav && nav.onLine === false;
        const net = (this.#net = new AbortController());
        win.addEventListener('offline', () => this.#goOffline(), { signal: net.signal });
        win.addEventListener('online', () => this.#goOnline(), { signal: net.signal });
    }
    #unlistenNetwork() {
        this.#net?.abort();
        this.#net = null;
        this.#offline = false;
    }
    /** `offline`: the connection is of no use; reconnecting, with no attempt until `online`. */
    #goOffline() {
        this.#offline = true;
        this.#clearTimer('reconnect');
        if (this.#state === States.CONNECTED) {
            this.#abandon(4000, 'offline', { code: 1006, reason: 'the browser went offline', wasClean: false });
        }
        else if (this.#state === States.CONNECTING || this.#state === States.RECONNECTING) {
            this.#endConnection(4000, 'offline'); // the attempt in flight cannot succeed
        }
    }
    /** `online`: reconnect at once, without waiting out the backoff. */
    #goOnline() {
        this.#offline = false;
        if ((this.#state === States.CONNECTING || this.#state === States.RECONNECTING) && !this.#conn) {
            this.#clearTimer('reconnect');
            this.#attempt += 1;
            this.#open();
        }
    }
    /**
     * With a token function and an expiresAt: refresh ahead of it, at the
     * latest REFRESH_AHEAD before, or at 90 % of the remaining lifetime for
     * short tokens.
     */
    #scheduleRefresh() {
        this.#clearTimer('refresh');
        if (typeof this.#token !== 'function' || !this.#expiresAt || !this.#conn)
            return;
        const left = msUntil(this.#expiresAt);
        if (!(left > 0))
            return;
        const delay = left >= 2 * REFRESH_AHEAD ? left - REFRESH_AHEAD : 0.9 * left;
        const gen = this.#gen;
        this.#after('refresh', delay, () => {
            if (gen !== this.#gen)
                return;
            this.refreshToken().catch((err) => {
                if (gen !== this.#gen || !err || err.code === 'connection_lost' || err.code === 'closed')
                    return;
                this.#emit('error', { code: err.code === 'token_failed' ? 'token_failed' : err.code, message: err.message });
                // Try again halfway to the expiry; past it, the hub's 4001 makes the client reconnect with a new token.
                const rest = this.#expiresAt ? msUntil(this.#expiresAt) : NaN;
                if (rest > 1000 && this.#conn) {
                    this.#after('refresh', rest / 2, () => {
                        if (gen === this.#gen)
                            this.#scheduleRefreshNow();
                    });
                }
            });
        });
    }
    #scheduleRefreshNow() {
        this.refreshToken().catch(noop);
    }
    // ----- internals: sending -----
    #frame(type, data, ref) {
        const msg = { type };
        if (data !== undefined)
            msg.data = data;
        if (ref !== undefined)
            msg.ref = ref;
        return JSON.stringify(msg);
    }
    #write(frame) {
        const conn = this.#conn;
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
    #request(type, data, extra = {}) {
        switch (this.#state) {
            case States.CLOSED:
                return Promise.reject(hubError('closed', 'the client is closed'));
            case States.IDLE:
            case States.DISCONNECTED:
                return Promise.reject(hubError('not_connected', 'not connected (call connect() first)'));
            default:
        }
        return this.#sendRequest(type, data, extra, !this.#ready);
    }
    /** Registers a pending request and writes it (or queues it when queue is true). */
    #sendRequest(type, data, extra, queue = false) {
        const ref = String(++this.#nextRef);
        let frame;
        try {
            frame = this.#frame(type, data, ref);
        }
        catch (err) {
            return Promise.reject(hubError('bad_request', `cannot encode ${type}: ${errText(err)}`));
        }
        return new Promise((resolve, reject) => {
            this.#pending.set(ref, { type, resolve, reject, ...extra });
            if (queue)
                this.#queue.push({ frame, ref });
            else
                this.#write(frame);
        });
    }
    /** Sends the waiting cursor position and opens a throttle window. */
    #flushCursor() {
        if (!this.#ready || !this.#cursorPending)
            return; // sent by #becomeReady
        const c = this.#cursorPending;
        this.#cursorPending = null;
        if (this.#write(this.#frame('cursor-update', c)))
            this.#patchSelf({ cursor: c });
        if (this.#cursorThrottle > 0) {
            // Trailing edge: the latest position, if one came within the window.
            this.#after('cursor', this.#cursorThrottle, () => this.#flushCursor());
        }
    }
    #sendActivity(isActive) {
        if (this.#write(this.#frame('activity-status', { isActive })))
            this.#patchSelf({ isActive });
    }
    /** In a session, tells the server the wanted activity if its list says otherwise. */
    #syncActivity() {
        if (!this.#ready || !this.#sessionId || this.#wantActive === null)
            return;
        const self = this.#participants.find((p) => p.userId === this.#selfId);
        if (!self || self.isActive !== this.#wantActive)
            this.#sendActivity(this.#wantActive);
    }
    // ----- internals: receiving -----
    /** One frame: one message, or several separated by '\n' (sessionhub.batch). */
    #onFrame(raw) {
        this.#lastReceived = Date.now();
        if (typeof raw !== 'string') {
            this.#badInput('binary frame from the server');
            return;
        }
        for (const line of raw.split('\n')) {
            if (line.trim() !== '')
                this.#onMessage(line);
        }
    }
    #badInput(message) {
        this.#emit('error', { code: 'bad_server_message', message });
    }
    /** One server message. Bad input is reported as an error event and never thrown. */
    #onMessage(line) {
        let msg;
        try {
            msg = JSON.parse(line);
        }
        catch (err) {
            this.#badInput(`not JSON: ${errText(err)}`);
            return;
        }
        if (!isObject(msg)) {
            this.#badInput('not a JSON object');
            return;
        }
        const { type, ref } = msg;
        const data = (msg.data === undefined || msg.data === null ? {} : msg.data);
        const check = isString(type) && Object.hasOwn(SERVER_MESSAGES, type) ? SERVER_MESSAGES[type] : null;
        let p = null;
        if (isString(ref) && this.#pending.has(ref)) {
            p = this.#pending.get(ref);
            this.#pending.delete(ref);
        }
        if (!check) {
            this.#badInput(`unknown message type ${JSON.stringify(type)}`);
            if (p)
                p.reject(hubError('bad_server_message', `unexpected reply ${JSON.stringify(type)}`));
            return;
        }
        if (!isObject(data) || !check(data)) {
            this.#badInput(`invalid ${type} data`);
            if (p)
                p.reject(hubError('bad_server_message', `invalid ${type} from the server`));
            return;
        }
        if (p && type !== 'error' && REPLY_TYPE[p.type] !== type) {
            this.#badInput(`${type} does not answer ${p.type}`);
            p.reject(hubError('bad_server_message', `unexpected reply ${type} to ${p.type}`));
            return;
        }
        this.#handle(type, data, isString(ref) ? ref : undefined, p);
    }
    #handle(type, data, ref, p) {
        if (type === 'error') {
            // An error that answers a request also rejects it; detail.ref says which.
            this.#emit(type, ref !== undefined ? { ...data, ref } : data);
            if (p)
                p.reject(hubError(data.code, `${data.code}: ${data.message || ''}`, { serverMessage: data.message }));
            return;
        }
        // Exactly once: a broadcast offset already seen (a replayed event the page
        // already had, or our own acked broadcast) is not dispatched again.
        if (type === 'broadcast' && !this.#seen(data.offset))
            return;
        if (type === 'ack')
            this.#seen(data.offset);
        if (type === 'session-joined') {
            const d = data;
            if (p && p.join) {
                const { userInfo, presence, recover } = p.join;
                const epoch = isString(d.epoch) ? d.epoch : undefined;
                // A recovered rejoin keeps the offset it asked from: the replay of
                // what was missed follows and advances it. A first join or a fresh
                // start (recovered: false) starts from the session's offset: the
                // events before it are not coming.
                const recovered = d.recovered === true && recover && recover.epoch === epoch;
                this.#membership = {
                    sessionId: d.sessionId,
                    userInfo: { ...userInfo, userId: d.selfId },
                    presence,
                    epoch,
                    offset: recovered && recover ? recover.offset : isNumber(d.offset) ? d.offset : 0,
                };
            }
            this.#sessionId = d.sessionId;
            this.#selfId = d.selfId;
            if (isString(d.expiresAt)) {
                this.#expiresAt = d.expiresAt;
                this.#scheduleRefresh();
            }
        }
        // The event first, then what changes with it.
        this.#emit(type, data);
        switch (type) {
            case 'session-joined':
                this.#setParticipants(data.participants); // already in the server's order
                if (p && p.rejoin !== undefined)
                    this.#emit('rejoined', { ...data, attempt: p.rejoin });
                else if (p && this.#ready)
                    this.#syncActivity();
                break;
            case 'session-left':
                this.#forgetSession();
                break;
            case 'user-joined': {
                const d = data;
                this.#setParticipants(d.participants || [...this.#participants.filter((x) => x.userId !== d.user.userId), d.user].sort(compareParticipants));
                break;
            }
            case 'user-left': {
                const d = data;
                this.#setParticipants(d.participants || this.#participants.filter((x) => x.userId !== d.userId));
                break;
            }
            case 'cursor-moved':
                this.#patchParticipant(data.userId, { cursor: data.cursor });
                break;
            case 'user-activity-changed':
                this.#patchParticipant(data.userId, { isActive: data.isActive });
                break;
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
    #seen(offset) {
        const m = this.#membership;
        if (!m || !isNumber(offset))
            return true;
        if (offset <= m.offset)
            return false;
        m.offset = offset;
        return true;
    }
    #setParticipants(list) {
        this.#participants = freezeList(list);
        this.#emit('participants', this.#participants);
    }
    #patchParticipant(userId, patch) {
        const i = this.#participants.findIndex((x) => x.userId === userId);
        if (i < 0)
            return;
        const list = this.#participants.slice();
        list[i] = { ...list[i], ...patch };
        this.#setParticipants(list);
    }
    /** The server does not echo our own cursor and activity: keep our entry current. */
    #patchSelf(patch) {
        if (this.#selfId)
            this.#patchParticipant(this.#selfId, patch);
    }
    /** Forgets the session (no rejoin) and clears participants (with an event if there were any). */
    #forgetSession() {
        this.#membership = null;
        this.#sessionId = null;
        this.#selfId = null;
        this.#expiresAt = null;
        this.#clearTimer('refresh');
        if (this.#participants.length > 0)
            this.#setParticipants([]);
    }
    // ----- internals: activity monitor (options.activity) -----
    /**
     * Watches page visibility and input: the user is active while the page is
     * visible and there was input within idleAfter ms. Listeners are added here
     * (only when the option is on) and removed by close().
     */
    #startActivityMonitor() {
        const doc = globalThis.document;
        const win = globalThis.window;
        const idleAfter = this.#idleAfter;
        if (!doc || !win || !idleAfter)
            return; // not in a browser: nothing to watch
        let lastInput = Date.now();
        const listening = (this.#activity = new AbortController());
        const visible = () => doc.visibilityState !== 'hidden';
        const armIdle = (ms) => this.#after('idle', ms, onIdleCheck);
        const onIdleCheck = () => {
            const left = idleAfter - (Date.now() - lastInput);
            if (left > 0)
                armIdle(left);
            else
                this.#monitorSays(false);
        };
        const onInput = () => {
            lastInput = Date.now();
            if (this.#timers.idle === null)
                armIdle(idleAfter); // only re-armed after it fired: cheap for pointermove
            if (visible() && this.#wantActive !== true)
                this.#monitorSays(true);
        };
        const onVisibility = () => {
            if (visible())
                onInput();
            else
                this.#monitorSays(false);
        };
        const listen = (target, type, fn) => target.addEventListener(type, fn, { passive: true, capture: true, signal: listening.signal });
        listen(doc, 'visibilitychange', onVisibility);
        for (const type of ['keydown', 'pointerdown', 'pointermove', 'wheel', 'touchstart', 'scroll', 'input', 'focus']) {
            listen(win, type, onInput);
        }
        this.#wantActive = visible();
        armIdle(idleAfter);
    }
    #stopActivityMonitor() {
        this.#clearTimer('idle');
        this.#activity?.abort();
        this.#activity = null;
    }
    /** The monitor's view changed: only a change is sent, and only in a session. */
    #monitorSays(isActive) {
        if (this.#wantActive === isActive)
            return;
        this.#wantActive = isActive;
        this.#syncActivity();
    }
}
/** A token as sent: undefined when there is none. */
const tokenText = (v) => (v === undefined || v === null || v === '' ? undefined : String(v));
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
