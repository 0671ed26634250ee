// @sessionhub/client in Node (no DOM: the node environment, the `ws`
// package's WebSocket passed in) against a real hubd in token mode: an async
// token function called for every connect and refresh; a 2 s token refreshed
// ahead of its expiresAt keeps the connection up through many lifetimes; a
// plain 2 s token ends with 4001, final.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { HubClient } from '@sessionhub/client';
import type { HubClientOptions, StateChangeDetail, WebSocketConstructor } from '@sessionhub/client';
import { mintToken, startHubd } from './hubd.js';
import type { Hubd } from './hubd.js';

const SECRET = 'node-client-secret-0123456789';
const until = (c: HubClient, type: string, pred: (d: any) => boolean): Promise<any> =>
  new Promise((resolve) => {
    const f = (e: Event): void => {
      const d = (e as CustomEvent).detail;
      if (pred(d)) {
        c.removeEventListener(type, f);
        resolve(d);
      }
    };
    c.addEventListener(type, f);
  });

describe('@sessionhub/client in Node', () => {
  let hub: Hubd;
  beforeAll(async () => {
    hub = await startHubd(['--jwt-secret', SECRET]);
  });
  afterAll(async () => {
    await hub?.stop();
  });
  const base: HubClientOptions = { WebSocket: WebSocket as unknown as WebSocketConstructor, reconnect: { initial: 20, max: 100, maxAttempts: 0 } };

  it('refreshes a 2 s token ahead of its expiry, over many lifetimes, with no reconnect', async () => {
    let calls = 0;
    const c = new HubClient(hub.ws, {
      ...base,
      token: async () => {
        calls++;
        await new Promise((r) => setImmediate(r));
        return mintToken(SECRET, { sub: 'node-user', name: 'Node' }, 2);
      },
    });
    const states: string[] = [];
    c.addEventListener('statechange', (e) => states.push(e.detail.to));
    let refreshed = 0;
    c.addEventListener('token-refreshed', () => refreshed++);
    await c.connect();
    const joined = await c.join('node-refresh', {});
    expect(joined.selfId).toBe('node-user');
    expect(typeof joined.expiresAt).toBe('string');
    expect(c.expiresAt).toBe(joined.expiresAt);
    await until(c, 'token-refreshed', () => refreshed >= 6);
    expect(states).toEqual(['connecting', 'connected']);
    expect(calls).toBe(1 + refreshed);
    expect(Date.parse(c.expiresAt!)).toBeGreaterThan(Date.parse(joined.expiresAt!));
    c.close();
  });

  it('without a token function, the expiry (4001) is final', async () => {
    const c = new HubClient(hub.ws, { ...base, token: mintToken(SECRET, { sub: 'plain', name: 'Plain' }, 2) });
    await c.connect();
    await c.join('node-refresh', {});
    const end: StateChangeDetail = await until(c, 'statechange', (d) => d.to === 'disconnected');
    expect(end.error).toEqual({ code: 4001, reason: expect.any(String) });
    expect(c.lastError?.message).toMatch(/4001 token expired/);
  });

  it('a refused refresh is answered with invalid_token and the old token stays', async () => {
    let n = 0;
    const c = new HubClient(hub.ws, { ...base, token: () => (++n === 1 ? mintToken(SECRET, { sub: 'r', name: 'R' }, 3600) : 'garbage') });
    await c.connect();
    await c.join('node-refresh', {});
    await expect(c.refreshToken()).rejects.toMatchObject({ code: 'invalid_token' });
    expect(c.state).toBe('connected');
    expect(await c.ping()).toBeGreaterThanOrEqual(0);
    c.close();
  });
});
