'use client';
// The platform's components, unstyled: class names (sh-*), data attributes
// and CSS variables; '@sessionhub/react/styles.css' is an optional small
// stylesheet with colours and the animations.

import { useEffect, useRef, useState } from 'react';
import type { CSSProperties, ReactNode } from 'react';
import type { Participant, UserInfo } from '@sessionhub/client';
import { useConnectionStatus, useSessionHub, useSessionParticipants } from './provider.js';
import type { ConnectionStatus as Status } from './store.js';

/** The class attribute of the names given, empty ones left out. */
const classNames = (...names: Array<string | false | undefined>): string => names.filter(Boolean).join(' ');

const LABELS: Record<Status, string> = {
  connecting: 'Connecting…',
  connected: 'Connected',
  reconnecting: 'Reconnecting…',
  disconnected: 'Disconnected',
  error: 'Connection error',
};

/** Props of ConnectionStatus. */
export interface ConnectionStatusProps {
  /** Only the coloured dot (with the label as its title). Defaults to false. */
  compact?: boolean;
  /** Show the last error's message. Defaults to true. */
  showError?: boolean;
  /** Text per status, replacing the English defaults. */
  labels?: Partial<Record<Status, string>>;
  /** Text shown next to the label while the connection uses the SSE fallback. Defaults to "via SSE fallback". */
  fallbackLabel?: string;
  className?: string;
}

/**
 * The connection state: a dot coloured per state (var(--sh-status-<state>)),
 * animated while connecting or reconnecting (class sh-animated), the label,
 * the transport while it is the SSE fallback (class sh-transport; the
 * transport is in data-transport), and the error's message.
 */
export function ConnectionStatus({ compact = false, showError = true, labels, fallbackLabel = 'via SSE fallback', className }: ConnectionStatusProps): ReactNode {
  const { status, error, transport } = useConnectionStatus();
  const fallback = status === 'connected' && transport === 'sse';
  const label = (labels?.[status] ?? LABELS[status]) + (compact && fallback ? ` (${fallbackLabel})` : '');
  const busy = status === 'connecting' || status === 'reconnecting';
  const classes = classNames('sh-connection-status', `sh-status-${status}`, busy && 'sh-animated', compact && 'sh-compact', className);
  return (
    <div
      className={classes}
      data-status={status}
      data-transport={transport ?? undefined}
      role="status"
      aria-live="polite"
      title={compact ? (error ? `${label}: ${error}` : label) : undefined}
    >
      <span className="sh-dot" aria-hidden="true" />
      {compact ? null : <span className="sh-label">{label}</span>}
      {!compact && fallback ? <span className="sh-transport">{fallbackLabel}</span> : null}
      {!compact && showError && error && status !== 'connected' ? <span className="sh-error">{error}</span> : null}
    </div>
  );
}

/** Props of ParticipantsList. */
export interface ParticipantsListProps {
  /** Text of the marker on this user's own entry. Defaults to "you". */
  selfLabel?: string;
  /** Show each cursor as line:column (1-based) and file. Defaults to true. */
  showCursor?: boolean;
  /** How long a leaving entry stays (class sh-leaving) for its animation, ms. Defaults to 300; 0 = at once. */
  leaveDuration?: number;
  /** What to show when nobody is there. */
  empty?: ReactNode;
  className?: string;
}

interface Shown {
  p: Participant;
  leaving: boolean;
}

/**
 * The session's participants: name, role badge, active or idle, cursor
 * (line:column and file), a "you" marker; a new entry has class sh-entering
 * for its first render, a leaving one sh-leaving for leaveDuration.
 */
export function ParticipantsList({ selfLabel = 'you', showCursor = true, leaveDuration = 300, empty = null, className }: ParticipantsListProps): ReactNode {
  const participants = useSessionParticipants();
  const { selfId } = useSessionHub();
  const [leaving, setLeaving] = useState<readonly Participant[]>([]);
  const known = useRef<Map<string, Participant>>(new Map());
  const seen = useRef<Set<string>>(new Set());
  const timers = useRef<Set<ReturnType<typeof setTimeout>>>(new Set());

  useEffect(() => {
    const now = new Map(participants.map((p) => [p.userId, p]));
    const gone = [...known.current.values()].filter((p) => !now.has(p.userId));
    known.current = now;
    if (gone.length === 0 || leaveDuration <= 0) return;
    setLeaving((l) => [...l.filter((x) => !now.has(x.userId)), ...gone]);
    const t = setTimeout(() => {
      timers.current.delete(t);
      setLeaving((l) => l.filter((x) => !gone.includes(x)));
    }, leaveDuration);
    timers.current.add(t);
  }, [participants, leaveDuration]);

  useEffect(() => {
    const ts = timers.current;
    return () => {
      for (const t of ts) clearTimeout(t);
      ts.clear();
    };
  }, []);

  const shown: Shown[] = participants.map((p) => ({ p, leaving: false }));
  for (const p of leaving) if (!participants.some((x) => x.userId === p.userId)) shown.push({ p, leaving: true });

  useEffect(() => {
    for (const { p } of shown) seen.current.add(p.userId);
  });

  if (shown.length === 0) return <>{empty}</>;
  return (
    <ul className={classNames('sh-participants', className)}>
      {shown.map(({ p, leaving: isLeaving }) => {
        const self = p.userId === selfId;
        const cls = classNames('sh-participant', isLeaving && 'sh-leaving', !seen.current.has(p.userId) && 'sh-entering', self && 'sh-self');
        return (
          <li
            key={p.userId}
            className={cls}
            data-user-id={p.userId}
            data-role={p.role}
            data-active={String(p.isActive)}
            data-self={self ? 'true' : undefined}
            style={p.color ? ({ '--sh-user-color': p.color } as CSSProperties) : undefined}
          >
            <span className={`sh-activity ${p.isActive ? 'sh-active' : 'sh-idle'}`} title={p.isActive ? 'active' : 'idle'} />
            <span className="sh-name">{p.name}</span>
            {self ? <span className="sh-you">{selfLabel}</span> : null}
            <span className={`sh-badge sh-badge-${p.role}`}>{p.role}</span>
            {showCursor && p.cursor ? (
              <span className="sh-cursor">
                {p.cursor.line + 1}:{p.cursor.column + 1}
                {p.cursor.file ? <span className="sh-file"> {p.cursor.file}</span> : null}
              </span>
            ) : null}
          </li>
        );
      })}
    </ul>
  );
}

/** Props of SessionConnection. */
export interface SessionConnectionProps {
  /** The session to join once connected (defaults to the provider's, if it has one). */
  sessionId?: string;
  userInfo?: UserInfo;
  /** Connect when mounted. Defaults to true. */
  autoConnect?: boolean;
  /** Show the connect and disconnect buttons. Defaults to true. */
  controls?: boolean;
  className?: string;
  children?: ReactNode;
}

/**
 * Manages the connection's lifecycle: connects when mounted, joins sessionId
 * when connected, shows the status with connect and disconnect buttons.
 */
export function SessionConnection({ sessionId, userInfo, autoConnect = true, controls = true, className, children }: SessionConnectionProps): ReactNode {
  const hub = useSessionHub();
  const { status, connect, disconnect, join, sessionId: joined } = hub;
  const userKey = JSON.stringify(userInfo ?? {});

  useEffect(() => {
    if (autoConnect && (status === 'disconnected' || status === 'error') && hub.state === 'idle') void connect();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [autoConnect, hub.client]);

  useEffect(() => {
    if (sessionId && status === 'connected' && joined !== sessionId) join(sessionId, userInfo ?? {}).catch(() => {});
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [sessionId, status, joined, userKey]);

  const busy = status === 'connecting' || status === 'reconnecting';
  return (
    <div className={classNames('sh-session-connection', className)} data-status={status}>
      <ConnectionStatus />
      {controls ? (
        <span className="sh-controls">
          {status === 'connected' || busy ? (
            <button type="button" className="sh-disconnect" onClick={() => disconnect()}>
              Disconnect
            </button>
          ) : (
            <button type="button" className="sh-connect" onClick={() => void connect()}>
              Connect
            </button>
          )}
        </span>
      ) : null}
      {joined ? <span className="sh-session">Session {joined}</span> : null}
      {children}
    </div>
  );
}
