'use client';
// SessionHubProvider and the hooks. The hooks read the provider's store
// through useSyncExternalStore, each with its own selection, so that a
// component re-renders only when what it selected changes.

import { createContext, useContext, useEffect, useMemo, useRef, useState, useSyncExternalStore } from 'react';
import type { ReactNode } from 'react';
import type { BroadcastData, Cursor, HubClient, HubClientOptions, JoinOptions, Participant, ReconnectOptions, UserInfo } from '@sessionhub/client';
import { SessionHubStore } from './store.js';
import type { ConnectionStatus, SessionHubSnapshot } from './store.js';

/** Props of SessionHubProvider. */
export interface SessionHubProviderProps {
  /** The hub's WebSocket endpoint. Defaults to ws(s)://<page host>/ws. */
  url?: string;
  /** Token mode: a token. */
  token?: string;
  /**
   * Token mode: a function (sync or async) called for every connect and every
   * refresh (the client refreshes ahead of the token's expiry). Preferred over token.
   */
  getToken?: () => string | null | undefined | Promise<string | null | undefined>;
  /** Who joins: name, role, color (userId in open mode). */
  userInfo?: UserInfo;
  /** The session to join. */
  sessionId?: string;
  /** Connect when mounted. Defaults to true. */
  autoConnect?: boolean;
  /** Join sessionId when connected. Defaults to true when sessionId is given. */
  autoJoin?: boolean;
  /** Presence of the join. Defaults to `diff` (the client keeps the list). */
  presence?: JoinOptions['presence'];
  /** The reconnect policy (it governs the first connect too). */
  reconnect?: ReconnectOptions | false;
  /** Other options of HubClient (heartbeatInterval, heartbeatTimeout, cursorThrottle, activity, …). */
  options?: HubClientOptions;
  /** A client made by the application: used as is, never closed by the provider. */
  client?: HubClient;
  children?: ReactNode;
}

const StoreContext = createContext<SessionHubStore | null>(null);
StoreContext.displayName = 'SessionHubContext';

/**
 * Provides one sessionhub connection to the components below it. It makes
 * the client when mounted (never during server rendering), connects
 * (autoConnect), joins sessionId when connected (autoJoin), and closes the
 * client when unmounted.
 */
export function SessionHubProvider(props: SessionHubProviderProps): ReactNode {
  const { url, token, getToken, userInfo, sessionId, autoConnect = true, presence, reconnect, options, client } = props;
  const autoJoin = props.autoJoin ?? sessionId !== undefined;
  const [store] = useState(() => new SessionHubStore({ url, token, getToken, reconnect, options, client }));
  // The token function is read through the store at every connect: the latest one is used.
  store.setConfig({ url, token, getToken, reconnect, options, client });

  useEffect(() => {
    store.attach();
    if (autoConnect) void store.connect();
    return () => store.detach();
    // A new url or client means a new connection; other props are read when used.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [store, url, client]);

  const userKey = JSON.stringify(userInfo ?? {});
  useEffect(() => {
    store.setAutoJoin(autoJoin && sessionId ? sessionId : null, userInfo ?? {}, { presence });
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [store, autoJoin, sessionId, userKey, presence, url, client]);

  return <StoreContext.Provider value={store}>{props.children}</StoreContext.Provider>;
}

function useStore(hook: string): SessionHubStore {
  const store = useContext(StoreContext);
  if (!store) {
    throw new Error(`sessionhub: ${hook}() must be used inside <SessionHubProvider> (also exported as SocketProvider); wrap your layout in it`);
  }
  return store;
}

/** Shallow equality: Object.is, or arrays / plain objects whose items are Object.is equal. */
export function shallowEqual(a: unknown, b: unknown): boolean {
  if (Object.is(a, b)) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a) && Array.isArray(b)) {
    return a.length === b.length && a.every((x, i) => Object.is(x, b[i]));
  }
  const ka = Object.keys(a as object);
  const kb = Object.keys(b as object);
  return ka.length === kb.length && ka.every((k) => Object.hasOwn(b as object, k) && Object.is((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

/**
 * Subscribes to the store with a selection: the component re-renders only
 * when isEqual says the selected value changed.
 */
function useSelected<T>(store: SessionHubStore, select: (s: SessionHubSnapshot) => T, isEqual: (a: T, b: T) => boolean): T {
  const memo = useRef<{ snap: SessionHubSnapshot; select: unknown; value: T } | null>(null);
  const get = (snap: SessionHubSnapshot): T => {
    const m = memo.current;
    if (m && m.snap === snap && m.select === select) return m.value;
    const value = select(snap);
    if (m && isEqual(m.value, value)) {
      memo.current = { snap, select, value: m.value };
      return m.value;
    }
    memo.current = { snap, select, value };
    return value;
  };
  return useSyncExternalStore(
    store.subscribe,
    () => get(store.getSnapshot()),
    () => get(store.getServerSnapshot()),
  );
}

/** What useConnectionStatus returns. */
export interface ConnectionStatusValue {
  status: ConnectionStatus;
  isConnected: boolean;
  /** Readable text of the last error; null when there is none. */
  error: string | null;
  /** The client's own state (idle, connecting, connected, reconnecting, disconnected, closed). */
  state: SessionHubSnapshot['state'];
  /** The transport of the current (or last) connection: 'websocket', 'sse' (the fallback) or 'custom'; null before the first. */
  transport: SessionHubSnapshot['transport'];
}

/** The connection status; re-renders only when it changes. */
export function useConnectionStatus(): ConnectionStatusValue {
  const store = useStore('useConnectionStatus');
  return useSelected(
    store,
    (s) => ({ status: s.status, isConnected: s.isConnected, error: s.error, state: s.state, transport: s.transport }),
    shallowEqual as (a: ConnectionStatusValue, b: ConnectionStatusValue) => boolean,
  );
}

/** What useSessionHub returns: the client, its state and the actions (stable functions). */
export interface SessionHubValue extends ConnectionStatusValue {
  client: HubClient | null;
  sessionId: string | null;
  selfId: string | null;
  connect: () => Promise<void>;
  disconnect: () => void;
  join: (sessionId: string, userInfo?: UserInfo, options?: JoinOptions) => ReturnType<HubClient['join']>;
  leave: () => Promise<void>;
  updateCursor: (cursor: Cursor) => void;
  setActive: (isActive: boolean) => void;
  broadcast: HubClient['broadcast'];
}

/**
 * The client, its connection state and session, and the actions. It does not
 * re-render on participant changes (useSessionParticipants does that).
 */
export function useSessionHub(): SessionHubValue {
  const store = useStore('useSessionHub');
  const s = useSelected(
    store,
    (x) => ({ client: x.client, status: x.status, isConnected: x.isConnected, error: x.error, state: x.state, transport: x.transport, sessionId: x.sessionId, selfId: x.selfId }),
    shallowEqual as (a: Pick<SessionHubSnapshot, 'client'>, b: Pick<SessionHubSnapshot, 'client'>) => boolean,
  );
  return useMemo(
    () => ({
      ...s,
      connect: store.connect,
      disconnect: store.disconnect,
      join: store.join,
      leave: store.leave,
      updateCursor: store.updateCursor,
      setActive: store.setActive,
      broadcast: store.broadcast,
    }),
    [s, store],
  );
}

/**
 * The session's participants, or what selector picks from them. The component
 * re-renders only when isEqual (default: shallowEqual) says the selection
 * changed: `useSessionParticipants((ps) => ps.map((p) => p.name))` does not
 * re-render when a cursor moves.
 */
export function useSessionParticipants(): readonly Participant[];
export function useSessionParticipants<T>(selector: (participants: readonly Participant[], selfId: string | null) => T, isEqual?: (a: T, b: T) => boolean): T;
export function useSessionParticipants<T>(
  selector?: (participants: readonly Participant[], selfId: string | null) => T,
  isEqual: (a: T, b: T) => boolean = shallowEqual,
): T | readonly Participant[] {
  const store = useStore('useSessionParticipants');
  return useSelected(store, (s) => (selector ? selector(s.participants, s.selfId) : (s.participants as unknown as T)), isEqual);
}

const sameCursor = (a: Cursor | null, b: Cursor | null): boolean =>
  a === b ||
  (!!a &&
    !!b &&
    a.line === b.line &&
    a.column === b.column &&
    a.file === b.file &&
    JSON.stringify(a.selection ?? null) === JSON.stringify(b.selection ?? null));

/** The cursor of one participant (null when none or not there); re-renders only when it moves. */
export function useCursor(userId: string | null | undefined): Cursor | null {
  const store = useStore('useCursor');
  return useSelected(store, (s) => (userId ? s.participants.find((p) => p.userId === userId)?.cursor ?? null : null), sameCursor);
}

/** Calls handler for each broadcast of that event (each once, recovered ones included); the latest handler is used. */
export function useBroadcast<P = unknown>(event: string, handler: (data: BroadcastData<P>) => void): void {
  const store = useStore('useBroadcast');
  const ref = useRef(handler);
  ref.current = handler;
  useEffect(
    () =>
      store.onBroadcast((d) => {
        if (d.event === event) ref.current(d as BroadcastData<P>);
      }),
    [store, event],
  );
}

// ----- the platform's names -----

/** The platform's name for SessionHubProvider. */
export const SocketProvider = SessionHubProvider;
/** The platform's name for useSessionHub. */
export const useSocket = useSessionHub;
