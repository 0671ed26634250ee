'use client';
// The store behind SessionHubProvider: it owns (or borrows) a HubClient, turns
// its events into immutable snapshots for useSyncExternalStore, and offers the
// actions of useSessionHub. Everything runs on the JavaScript thread; nothing
// here touches a browser global until attach() (an effect), so importing it
// and rendering on a server is safe.

import { HubClient } from '@sessionhub/client';
import type {
  BroadcastData,
  BroadcastTarget,
  Cursor,
  HubClientOptions,
  HubState,
  TransportName,
  JoinOptions,
  Participant,
  ReconnectOptions,
  SessionJoinedData,
  UserInfo,
} from '@sessionhub/client';

/**
 * The connection status as the platform's components know it: `connecting`
 * (first connect, retried under the policy), `connected`, `reconnecting`,
 * `disconnected` (not started, or closed) and `error` (gave up, a final close,
 * or no attempt can succeed; `error` says why).
 */
export type ConnectionStatus = 'disconnected' | 'connecting' | 'connected' | 'reconnecting' | 'error';

/** What the provider knows about its connection, as one immutable snapshot. */
export interface SessionHubSnapshot {
  /** The client in use; null before the provider mounted (and during server rendering). */
  client: HubClient | null;
  status: ConnectionStatus;
  /** The client's own state. */
  state: HubState;
  /** The transport of the current (or last) connection: 'websocket', 'sse' (the fallback) or 'custom'; null before the first. */
  transport: TransportName | null;
  /** Readable text of the last error (a failed attempt, a refused join, giving up); null when there is none. */
  error: string | null;
  isConnected: boolean;
  /** The session joined; null outside one. */
  sessionId: string | null;
  /** The userId the hub uses for this user; null outside a session. */
  selfId: string | null;
  /** The session's participants, in the hub's order (frozen; a new array on every change). */
  participants: readonly Participant[];
}

/** How the provider makes its client. */
export interface StoreConfig {
  url?: string;
  token?: string;
  getToken?: () => string | null | undefined | Promise<string | null | undefined>;
  reconnect?: ReconnectOptions | false;
  /** Other options of HubClient (heartbeat, cursorThrottle, activity, WebSocket, …). */
  options?: HubClientOptions;
  /** A client made by the application: the store uses it and never closes it. */
  client?: HubClient;
}

const EMPTY: readonly Participant[] = Object.freeze([]);

function statusOf(state: HubState, hasError: boolean): ConnectionStatus {
  switch (state) {
    case 'connecting':
      return 'connecting';
    case 'connected':
      return 'connected';
    case 'reconnecting':
      return 'reconnecting';
    case 'disconnected':
      return hasError ? 'error' : 'disconnected';
    default: // idle, closed
      return 'disconnected';
  }
}

/** The initial snapshot, also the one used during server rendering. */
export const SERVER_SNAPSHOT: SessionHubSnapshot = Object.freeze({
  client: null,
  status: 'disconnected',
  state: 'idle',
  transport: null,
  error: null,
  isConnected: false,
  sessionId: null,
  selfId: null,
  participants: EMPTY,
});

const errText = (err: unknown): string =>
  err && typeof (err as Error).message === 'string' ? (err as Error).message : String(err);

/**
 * One provider's connection: the client, a snapshot of it, subscribers, and
 * the actions. attach() and detach() follow the provider's effect (twice
 * under StrictMode: a detached store makes a new client when attached again).
 */
export class SessionHubStore {
  #config: StoreConfig;
  #client: HubClient | null = null;
  #owned = false;
  #snapshot: SessionHubSnapshot = SERVER_SNAPSHOT;
  #listeners = new Set<() => void>();
  #broadcastListeners = new Set<(d: BroadcastData) => void>();
  #unlisten: Array<() => void> = [];
  #error: string | null = null;
  #wanted: { sessionId: string; userInfo: UserInfo; options?: JoinOptions } | null = null;
  #joining: string | null = null;

  constructor(config: StoreConfig) {
    this.#config = config;
  }

  /** Updates what the next client is made with (the token function is read at every connect). */
  setConfig(config: StoreConfig): void {
    this.#config = config;
  }

  // ----- useSyncExternalStore -----

  subscribe = (listener: () => void): (() => void) => {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  };

  getSnapshot = (): SessionHubSnapshot => this.#snapshot;

  getServerSnapshot = (): SessionHubSnapshot => SERVER_SNAPSHOT;

  /** Calls handler for every broadcast the client dispatches (each once), whichever client is in use. */
  onBroadcast(handler: (d: BroadcastData) => void): () => void {
    this.#broadcastListeners.add(handler);
    return () => {
      this.#broadcastListeners.delete(handler);
    };
  }

  // ----- lifecycle -----

  /** Starts using a client (the given one, or a new one); called by the provider's effect. */
  attach(): void {
    if (this.#client) return;
    const c = this.#config;
    if (c.client) {
      this.#use(c.client, false);
      return;
    }
    const tokenFn = c.getToken ? () => (this.#config.getToken ? this.#config.getToken() : this.#config.token) : undefined;
    const options: HubClientOptions = {
      ...c.options,
      reconnect: c.reconnect !== undefined ? c.reconnect : c.options?.reconnect,
      token: tokenFn || c.token || c.options?.token,
    };
    this.#use(new HubClient(c.url, options), true);
  }

  /** Stops using the client: closes it if the store made it, and removes every listener. */
  detach(): void {
    const client = this.#client;
    for (const off of this.#unlisten) off();
    this.#unlisten = [];
    this.#client = null;
    this.#joining = null;
    if (client && this.#owned) client.close();
    this.#owned = false;
    this.#error = null;
    this.#publish();
  }

  #use(client: HubClient, owned: boolean): void {
    this.#client = client;
    this.#owned = owned;
    this.#error = null;
    const on = (type: string, fn: (e: Event) => void): void => {
      client.addEventListener(type, fn);
      this.#unlisten.push(() => client.removeEventListener(type, fn));
    };
    const refresh = (): void => this.#publish();
    on('statechange', (e) => {
      const d = (e as CustomEvent).detail as { to: HubState };
      if (d.to === 'connected') {
        this.#error = null;
        this.#autoJoin();
      } else if (d.to === 'disconnected' && client.lastError) {
        this.#error = client.lastError.message;
      }
      this.#publish();
    });
    on('participants', refresh);
    on('session-joined', refresh);
    on('session-left', refresh);
    on('error', (e) => {
      const d = (e as CustomEvent).detail as { code: string; message: string };
      // Failed attempts while (re)connecting: shown until a connection opens.
      if (d.code === 'connect_failed' || d.code === 'connect_timeout' || d.code === 'token_failed') {
        this.#error = d.message;
        this.#publish();
      }
    });
    on('broadcast', (e) => {
      const d = (e as CustomEvent).detail as BroadcastData;
      for (const fn of [...this.#broadcastListeners]) fn(d);
    });
    this.#publish();
  }

  /** Builds a new snapshot and tells subscribers, if anything changed. */
  #publish(): void {
    const c = this.#client;
    const prev = this.#snapshot;
    const state: HubState = c ? c.state : 'idle';
    const error = this.#error;
    const next: SessionHubSnapshot = {
      client: c,
      state,
      transport: c ? c.transport : null,
      status: statusOf(state, error !== null),
      error,
      isConnected: state === 'connected',
      sessionId: c ? c.sessionId : null,
      selfId: c ? c.selfId : null,
      participants: c ? c.participants : EMPTY,
    };
    // isConnected follows state; every other field is compared as it is.
    if ((Object.keys(next) as Array<keyof SessionHubSnapshot>).every((k) => prev[k] === next[k])) return;
    this.#snapshot = Object.freeze(next);
    for (const l of [...this.#listeners]) l();
  }

  // ----- actions -----

  /**
   * Connects (making a new client if the last one was closed by disconnect()).
   * Never rejects: a failure shows as status `error` with its message.
   */
  connect = (): Promise<void> => {
    if (!this.#client || (this.#owned && this.#client.state === 'closed')) {
      for (const off of this.#unlisten) off();
      this.#unlisten = [];
      this.#client = null;
      this.attach();
    }
    const client = this.#client as HubClient;
    return client.connect().catch((err) => {
      if (this.#client === client && client.state !== 'closed') {
        this.#error = errText(err);
        this.#publish();
      }
    });
  };

  /** Closes the connection for good (connect() starts a new one); leaves the session at once. */
  disconnect = (): void => {
    this.#wanted = null;
    if (this.#client && this.#owned) this.#client.close();
    this.#publish();
  };

  /**
   * Joins a session (remembered: it is joined again after connect()). Resolves
   * with session-joined; rejects with the HubError, also shown as `error`.
   */
  join = async (sessionId: string, userInfo: UserInfo = {}, options?: JoinOptions): Promise<SessionJoinedData> => {
    this.#wanted = { sessionId, userInfo, options };
    const client = this.#requireClient();
    try {
      return await client.join(sessionId, userInfo, options);
    } catch (err) {
      if (this.#client === client) {
        this.#error = errText(err);
        this.#publish();
      }
      throw err;
    }
  };

  /** Leaves the session. */
  leave = async (): Promise<void> => {
    this.#wanted = null;
    await this.#requireClient().leave();
  };

  /** Sends the local cursor (throttled by the client). */
  updateCursor = (cursor: Cursor): void => {
    if (this.#client) this.#client.updateCursor(cursor);
  };

  /** Tells the others whether this user is active. */
  setActive = (isActive: boolean): void => {
    if (this.#client) this.#client.setActive(isActive);
  };

  /** Sends an application event; resolves with its offset. */
  broadcast = (event: string, payload?: unknown, to?: BroadcastTarget): Promise<number> =>
    this.#requireClient().broadcast(event, payload, to);

  /** The session the provider joins by itself when connected (autoJoin); null for none. */
  setAutoJoin(sessionId: string | null, userInfo: UserInfo, options?: JoinOptions): void {
    const prev = this.#wanted;
    this.#wanted = sessionId ? { sessionId, userInfo, options } : null;
    if (!sessionId) {
      if (prev && this.#client && this.#client.sessionId) this.#client.leave().catch(() => {});
      return;
    }
    this.#autoJoin();
  }

  #autoJoin(): void {
    const c = this.#client;
    const w = this.#wanted;
    if (!c || !w || c.state !== 'connected') return;
    if (c.sessionId === w.sessionId || this.#joining === w.sessionId) return;
    this.#joining = w.sessionId;
    c.join(w.sessionId, w.userInfo, w.options).then(
      () => {
        if (this.#joining === w.sessionId) this.#joining = null;
        this.#publish();
      },
      (err) => {
        if (this.#joining === w.sessionId) this.#joining = null;
        if (this.#client === c && c.state !== 'closed') {
          this.#error = errText(err);
          this.#publish();
        }
      },
    );
  }

  #requireClient(): HubClient {
    if (!this.#client) {
      const err = new Error('sessionhub: the provider has no client yet (it is made when SessionHubProvider mounts)') as Error & { code: string };
      err.code = 'not_connected';
      throw err;
    }
    return this.#client;
  }
}
