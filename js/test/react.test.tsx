// @vitest-environment jsdom
//
// @sessionhub/react against a real hubd (started by this file as a process),
// over jsdom's real WebSocket: the seed's cases (initial state, connect,
// errors, join and leave, cursor and activity, the provider requirement),
// render counts of selectors, and a clean unmount. Every wait is waitFor on a
// condition; nothing sleeps.
import { act, cleanup, render, renderHook, screen, waitFor } from '@testing-library/react';
import { StrictMode } from 'react';
import type { ReactNode } from 'react';
import { renderToString } from 'react-dom/server';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  ConnectionStatus,
  ParticipantsList,
  SessionConnection,
  SessionHubProvider,
  SocketProvider,
  useBroadcast,
  useConnectionStatus,
  useCursor,
  useSessionHub,
  useSessionParticipants,
  useSocket,
} from '@sessionhub/react';
import type { SessionHubValue } from '@sessionhub/react';
import { freePort, mintToken, startHubd } from './hubd.js';
import type { Hubd } from './hubd.js';

// jsdom's pages are at http://localhost:3000: the hub must allow that origin.
const ORIGIN = ['--allowed-origins', 'localhost:3000'];
const FAST = { initial: 20, max: 100, maxAttempts: 0 };
const WAIT = { timeout: 20_000 };

let hub: Hubd;
beforeAll(async () => {
  hub = await startHubd(ORIGIN);
});
afterAll(async () => {
  await hub?.stop();
});
afterEach(() => cleanup());

let sessionSeq = 0;
const newSession = (): string => `react-${process.pid}-${++sessionSeq}`;

/** A probe that exposes useSessionHub's value to the test. */
function Probe({ into }: { into: { current: SessionHubValue | null } }): ReactNode {
  into.current = useSessionHub();
  return null;
}

function Status(): ReactNode {
  const { status, error } = useConnectionStatus();
  return (
    <p data-testid="status" data-status={status}>
      {error ?? ''}
    </p>
  );
}

describe('SessionHubProvider and hooks against a real hubd', () => {
  it('starts disconnected with no session, and renders on a server without touching window or WebSocket', () => {
    let constructed = 0;
    const Real = globalThis.WebSocket;
    class Counting extends Real {
      constructor(url: string | URL, protocols?: string | string[]) {
        constructed++;
        super(url, protocols);
      }
    }
    globalThis.WebSocket = Counting as typeof WebSocket;
    try {
      const html = renderToString(
        <SessionHubProvider url={hub.ws} sessionId="ssr" userInfo={{ name: 'Ada' }}>
          <ConnectionStatus />
          <ParticipantsList empty={<i>nobody</i>} />
        </SessionHubProvider>,
      );
      expect(html).toContain('data-status="disconnected"');
      expect(html).toContain('nobody');
      expect(constructed).toBe(0);
    } finally {
      globalThis.WebSocket = Real;
    }

    const hubRef: { current: SessionHubValue | null } = { current: null };
    render(
      <SessionHubProvider url={hub.ws} autoConnect={false}>
        <Probe into={hubRef} />
        <Status />
      </SessionHubProvider>,
    );
    expect(screen.getByTestId('status').dataset.status).toBe('disconnected');
    expect(hubRef.current?.sessionId).toBeNull();
    expect(hubRef.current?.selfId).toBeNull();
    expect(hubRef.current?.client?.state).toBe('idle');
  });

  it('connects on mount and joins the session (diff presence by default)', async () => {
    const sid = newSession();
    const hubRef: { current: SessionHubValue | null } = { current: null };
    render(
      <StrictMode>
        <SessionHubProvider url={hub.ws} sessionId={sid} userInfo={{ userId: 'ada', name: 'Ada', role: 'instructor' }} reconnect={FAST}>
          <Probe into={hubRef} />
          <Status />
          <ParticipantsList />
        </SessionHubProvider>
      </StrictMode>,
    );
    await waitFor(() => expect(hubRef.current?.sessionId).toBe(sid), WAIT);
    expect(screen.getByTestId('status').dataset.status).toBe('connected');
    expect(hubRef.current?.selfId).toBe('ada');
    const li = document.querySelector('li[data-user-id="ada"]') as HTMLElement;
    expect(li.dataset.role).toBe('instructor');
    expect(li.querySelector('.sh-you')?.textContent).toBe('you');
    const res = await fetch(`${hub.http}/metrics`);
    expect(res.status).toBe(200);
  });

  it('retries when the hub is down at mount, and connects once it is up', async () => {
    const port = await freePort();
    const hubRef: { current: SessionHubValue | null } = { current: null };
    render(
      <SessionHubProvider url={`ws://127.0.0.1:${port}/ws`} sessionId="late" userInfo={{ name: 'Ada' }} reconnect={FAST}>
        <Probe into={hubRef} />
        <Status />
      </SessionHubProvider>,
    );
    // A failed attempt shows while the client keeps trying.
    await waitFor(() => expect(screen.getByTestId('status').textContent).toMatch(/could not connect/), WAIT);
    expect(screen.getByTestId('status').dataset.status).toBe('connecting');
    const late = await startHubd(ORIGIN, port);
    try {
      await waitFor(() => expect(hubRef.current?.sessionId).toBe('late'), WAIT);
      expect(screen.getByTestId('status').dataset.status).toBe('connected');
      expect(screen.getByTestId('status').textContent).toBe('');
    } finally {
      cleanup();
      await late.stop();
    }
  });

  it('token mode: awaits an async getToken; a refused token ends in error with a readable message', async () => {
    const secret = 'react-test-secret-0123456789';
    const th = await startHubd([...ORIGIN, '--jwt-secret', secret]);
    try {
      let calls = 0;
      const getToken = async (): Promise<string> => {
        calls++;
        await Promise.resolve();
        return mintToken(secret, { sub: 'tok-user', name: 'Token User', role: 'learner' });
      };
      const ok: { current: SessionHubValue | null } = { current: null };
      const { unmount } = render(
        <SessionHubProvider url={th.ws} getToken={getToken} sessionId="tok" reconnect={FAST}>
          <Probe into={ok} />
        </SessionHubProvider>,
      );
      await waitFor(() => expect(ok.current?.selfId).toBe('tok-user'), WAIT);
      expect(calls).toBeGreaterThanOrEqual(1);
      unmount();

      render(
        <SessionHubProvider url={th.ws} getToken={async () => mintToken('another-secret-0123456789', { sub: 'x' })} reconnect={{ initial: 10, max: 20, maxAttempts: 2 }}>
          <Status />
        </SessionHubProvider>,
      );
      await waitFor(() => expect(screen.getByTestId('status').dataset.status).toBe('error'), WAIT);
      expect(screen.getByTestId('status').textContent).toMatch(/gave up after 2 failed attempts.*401/);
    } finally {
      cleanup();
      await th.stop();
    }
  });

  it('a bad URL is the error state with a message, never a throw during render', async () => {
    render(
      <SessionHubProvider url="ftp://example.invalid/ws">
        <Status />
        <ConnectionStatus />
      </SessionHubProvider>,
    );
    await waitFor(() => expect(screen.getByTestId('status').dataset.status).toBe('error'), WAIT);
    expect(screen.getByTestId('status').textContent).toMatch(/unsupported URL scheme ftp:/);
    expect(document.querySelector('.sh-connection-status .sh-error')?.textContent).toMatch(/ftp:/);
  });

  it('join and leave: each sees the other come and go', async () => {
    const sid = newSession();
    const a: { current: SessionHubValue | null } = { current: null };
    const b: { current: SessionHubValue | null } = { current: null };
    function Names({ id }: { id: string }): ReactNode {
      const names = useSessionParticipants((ps) => ps.map((p) => p.name));
      return <p data-testid={id}>{names.join(',')}</p>;
    }
    render(
      <>
        <SessionHubProvider url={hub.ws} userInfo={{ name: 'Ada' }} reconnect={FAST}>
          <Probe into={a} />
          <Names id="a" />
        </SessionHubProvider>
        <SessionHubProvider url={hub.ws} reconnect={FAST}>
          <Probe into={b} />
          <Names id="b" />
        </SessionHubProvider>
      </>,
    );
    await waitFor(() => expect(a.current?.isConnected && b.current?.isConnected).toBe(true), WAIT);
    await act(async () => {
      await a.current!.join(sid, { userId: 'ada', name: 'Ada' });
      await b.current!.join(sid, { userId: 'bob', name: 'Bob' });
    });
    await waitFor(() => expect(screen.getByTestId('a').textContent).toBe('Ada,Bob'), WAIT);
    expect(screen.getByTestId('b').textContent).toBe('Ada,Bob');
    await act(async () => {
      await b.current!.leave();
    });
    await waitFor(() => expect(screen.getByTestId('a').textContent).toBe('Ada'), WAIT);
    expect(screen.getByTestId('b').textContent).toBe('');
    expect(b.current?.sessionId).toBeNull();
  });

  it('cursor and activity updates reach the other participant', async () => {
    const sid = newSession();
    const b: { current: SessionHubValue | null } = { current: null };
    function BobCursor(): ReactNode {
      const c = useCursor('bob');
      const active = useSessionParticipants((ps) => ps.find((p) => p.userId === 'bob')?.isActive ?? null);
      return (
        <p data-testid="bob" data-active={String(active)}>
          {c ? `${c.line}:${c.column}:${c.file ?? ''}` : 'none'}
        </p>
      );
    }
    render(
      <>
        <SessionHubProvider url={hub.ws} sessionId={sid} userInfo={{ userId: 'ada', name: 'Ada' }} reconnect={FAST}>
          <BobCursor />
          <ParticipantsList />
        </SessionHubProvider>
        <SessionHubProvider url={hub.ws} sessionId={sid} userInfo={{ userId: 'bob', name: 'Bob' }} reconnect={FAST}>
          <Probe into={b} />
        </SessionHubProvider>
      </>,
    );
    await waitFor(() => expect(screen.getByTestId('bob').dataset.active).toBe('true'), WAIT);
    act(() => b.current!.updateCursor({ line: 11, column: 3, file: 'main.go' }));
    await waitFor(() => expect(screen.getByTestId('bob').textContent).toBe('11:3:main.go'), WAIT);
    expect(document.querySelector('li[data-user-id="bob"] .sh-cursor')?.textContent).toBe('12:4 main.go');
    act(() => b.current!.setActive(false));
    await waitFor(() => expect(screen.getByTestId('bob').dataset.active).toBe('false'), WAIT);
    expect((document.querySelector('li[data-user-id="bob"]') as HTMLElement).dataset.active).toBe('false');
  });

  it('useBroadcast gets the events of its name, once each', async () => {
    const sid = newSession();
    const got: unknown[] = [];
    const b: { current: SessionHubValue | null } = { current: null };
    function Listener(): ReactNode {
      useBroadcast<{ n: number }>('quiz', (d) => got.push(d.payload.n));
      return null;
    }
    render(
      <>
        <SessionHubProvider url={hub.ws} sessionId={sid} userInfo={{ userId: 'ada', name: 'Ada' }} reconnect={FAST}>
          <Listener />
          <Status />
        </SessionHubProvider>
        <SessionHubProvider url={hub.ws} sessionId={sid} userInfo={{ userId: 'bob', name: 'Bob' }} reconnect={FAST}>
          <Probe into={b} />
        </SessionHubProvider>
      </>,
    );
    await waitFor(() => expect(b.current?.sessionId).toBe(sid), WAIT);
    await act(async () => {
      await b.current!.broadcast('other', { n: 0 });
      await b.current!.broadcast('quiz', { n: 1 });
      await b.current!.broadcast('quiz', { n: 2 });
    });
    await waitFor(() => expect(got).toEqual([1, 2]), WAIT);
  });

  it('a hook outside the provider throws an error that names the provider', () => {
    const quiet = console.error;
    console.error = () => {};
    try {
      for (const hook of [useSessionHub, useSocket, useConnectionStatus, () => useSessionParticipants(), () => useCursor('x')]) {
        expect(() => renderHook(hook)).toThrow(/SessionHubProvider/);
      }
    } finally {
      console.error = quiet;
    }
    expect(SocketProvider).toBe(SessionHubProvider);
    expect(useSocket).toBe(useSessionHub);
  });

  it('a names-only selector does not re-render on cursor moves', async () => {
    const sid = newSession();
    const b: { current: SessionHubValue | null } = { current: null };
    const renders = { names: 0, cursors: 0, status: 0 };
    function Names(): ReactNode {
      renders.names++;
      const names = useSessionParticipants((ps) => ps.map((p) => p.name));
      return <p data-testid="names">{names.join(',')}</p>;
    }
    function Cursors(): ReactNode {
      renders.cursors++;
      const c = useCursor('bob');
      return <p data-testid="cursor">{c ? c.line : -1}</p>;
    }
    function StatusCount(): ReactNode {
      renders.status++;
      return <Status />;
    }
    render(
      <>
        <SessionHubProvider url={hub.ws} sessionId={sid} userInfo={{ userId: 'ada', name: 'Ada' }} reconnect={FAST}>
          <Names />
          <Cursors />
          <StatusCount />
        </SessionHubProvider>
        <SessionHubProvider url={hub.ws} sessionId={sid} userInfo={{ userId: 'bob', name: 'Bob' }} options={{ cursorThrottle: 0 }} reconnect={FAST}>
          <Probe into={b} />
        </SessionHubProvider>
      </>,
    );
    await waitFor(() => expect(screen.getByTestId('names').textContent).toBe('Ada,Bob'), WAIT);
    const before = { ...renders };
    for (let line = 1; line <= 20; line++) {
      act(() => b.current!.updateCursor({ line, column: 0 }));
      await waitFor(() => expect(screen.getByTestId('cursor').textContent).toBe(String(line)), WAIT);
    }
    expect(renders.cursors - before.cursors).toBeGreaterThanOrEqual(20);
    expect(renders.names).toBe(before.names);
    expect(renders.status).toBe(before.status);
  });

  it('unmounting closes the client and leaves no timer of the packages behind', async () => {
    const realSet = globalThis.setTimeout;
    const realClear = globalThis.clearTimeout;
    const live = new Map<unknown, string>();
    // A timer the packages set themselves (the caller of setTimeout is theirs),
    // not one of the WebSocket implementation's (its close handshake).
    const ours = (stack: string): boolean => /packages[\\/](client|react)[\\/]/.test(stack.split('\n')[2] ?? '');
    globalThis.setTimeout = ((fn: (...a: unknown[]) => void, ms?: number, ...args: unknown[]) => {
      const stack = new Error().stack ?? '';
      const id = realSet(
        (...a: unknown[]) => {
          live.delete(id);
          fn(...a);
        },
        ms,
        ...args,
      );
      if (ours(stack)) live.set(id, stack);
      return id;
    }) as typeof setTimeout;
    globalThis.clearTimeout = ((id: Parameters<typeof clearTimeout>[0]) => {
      live.delete(id);
      realClear(id);
    }) as typeof clearTimeout;
    try {
      const sid = newSession();
      const a: { current: SessionHubValue | null } = { current: null };
      const { unmount } = render(
        <SessionHubProvider url={hub.ws} sessionId={sid} userInfo={{ name: 'Ada' }} reconnect={FAST} options={{ activity: true }}>
          <Probe into={a} />
          <ParticipantsList />
        </SessionHubProvider>,
      );
      await waitFor(() => expect(a.current?.sessionId).toBe(sid), WAIT);
      act(() => a.current!.updateCursor({ line: 1, column: 1 }));
      const client = a.current!.client!;
      expect(live.size).toBeGreaterThan(0); // heartbeat, stable-connection clock, cursor throttle, activity
      unmount();
      expect(client.state).toBe('closed');
      expect([...live.values()]).toEqual([]);
    } finally {
      globalThis.setTimeout = realSet;
      globalThis.clearTimeout = realClear;
    }
  });

  it('SessionConnection connects, joins, and its buttons disconnect and connect again', async () => {
    const sid = newSession();
    render(
      <SessionHubProvider url={hub.ws} autoConnect={false} reconnect={FAST}>
        <SessionConnection sessionId={sid} userInfo={{ name: 'Ada' }} />
      </SessionHubProvider>,
    );
    await waitFor(() => expect(document.querySelector('.sh-session')?.textContent).toBe(`Session ${sid}`), WAIT);
    expect((document.querySelector('.sh-session-connection') as HTMLElement).dataset.status).toBe('connected');
    act(() => (document.querySelector('.sh-disconnect') as HTMLButtonElement).click());
    await waitFor(() => expect((document.querySelector('.sh-session-connection') as HTMLElement).dataset.status).toBe('disconnected'), WAIT);
    act(() => (document.querySelector('.sh-connect') as HTMLButtonElement).click());
    await waitFor(() => expect(document.querySelector('.sh-session')?.textContent).toBe(`Session ${sid}`), WAIT);
  });
});




