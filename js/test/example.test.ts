// The classroom example (examples/classroom, built by `npm run build`) in
// real Chromium against a real hubd: two tabs see each other in
// ParticipantsList, a caret moved in one shows in the other, and
// ConnectionStatus shows reconnecting while hubd restarts and connected after.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { join } from 'node:path';
import { createServer, request } from 'node:http';
import type { Server } from 'node:http';
import { haveChromium, launch, serveDir } from './chromium.js';
import { jsRoot, startHubd } from './hubd.js';
import type { Hubd } from './hubd.js';

const T = { timeout: 20_000 };

describe.runIf(haveChromium)('classroom example in Chromium', () => {
  let browser: Browser;
  let hub: Hubd;
  let site: Awaited<ReturnType<typeof serveDir>>;
  beforeAll(async () => {
    site = await serveDir(join(jsRoot, 'examples', 'classroom', 'dist'));
    hub = await startHubd(['--allowed-origins', site.host]);
    browser = await launch();
  });
  afterAll(async () => {
    await browser?.close();
    await hub?.stop();
    await site?.close();
  });

  const status = (p: Page): Promise<string | null> => p.locator('header .sh-connection-status:not(.sh-compact)').getAttribute('data-status');
  const names = (p: Page): Promise<string[]> => p.locator('.sh-participant:not(.sh-leaving) .sh-name').allTextContents();

  it('two tabs see each other, carets move, and the status follows a hub restart', async () => {
    const ctx = await browser.newContext();
    const errors: string[] = [];
    const open = async (name: string, role: string): Promise<Page> => {
      const p = await ctx.newPage();
      p.on('pageerror', (e) => errors.push(`${name}: ${e.message}`));
      await p.goto(`${site.origin}/?hub=${encodeURIComponent(hub.ws)}&session=room-1&name=${name}&role=${role}`);
      return p;
    };
    const ada = await open('Ada', 'instructor');
    const linus = await open('Linus', 'learner');

    await expect.poll(() => names(ada), T).toEqual(['Ada', 'Linus']);
    await expect.poll(() => names(linus), T).toEqual(['Ada', 'Linus']);
    expect(await ada.locator('.sh-participant[data-self="true"] .sh-name').textContent()).toBe('Ada');
    expect(await ada.locator('.sh-participant:has(.sh-name:text-is("Ada")) .sh-badge').textContent()).toBe('instructor');
    expect(await status(ada)).toBe('connected');

    // Linus puts his caret at line 6, column 2 and presses → (a real key): 6:3 in the others' lists.
    await linus.locator('#code').click();
    await linus.evaluate(() => {
      const t = document.querySelector('#code') as HTMLTextAreaElement;
      const pos = t.value.split('\n').slice(0, 5).join('\n').length + 1 + 1;
      t.setSelectionRange(pos, pos);
    });
    await linus.keyboard.press('ArrowRight');
    await expect.poll(() => ada.locator('.sh-participant:has(.sh-name:text-is("Linus")) .sh-cursor').textContent(), T).toBe('6:3 main.go');
    await expect.poll(() => ada.locator('#carets li').allTextContents(), T).toEqual(['Linus 6:3']);

    // hubd restarts: both show reconnecting, then connected, in one list again.
    await hub.stop();
    await expect.poll(() => status(ada), T).toBe('reconnecting');
    await expect.poll(() => status(linus), T).toBe('reconnecting');
    expect(await ada.locator('header .sh-connection-status.sh-animated').count()).toBe(2);
    await hub.start();
    await expect.poll(() => status(ada), T).toBe('connected');
    await expect.poll(() => status(linus), T).toBe('connected');
    // The new hub lists them in the order they rejoined.
    await expect.poll(async () => (await names(ada)).sort(), T).toEqual(['Ada', 'Linus']);
    await expect.poll(async () => (await names(linus)).sort(), T).toEqual(['Ada', 'Linus']);

    // The new hub carries carets again.
    await linus.keyboard.press('ArrowDown');
    await expect.poll(() => ada.locator('#carets li').allTextContents(), T).toEqual(['Linus 7:2']) // line 7 is "}": the caret stays at its end;
    expect(errors).toEqual([]);
    await ctx.close();
  });

  // A school network: a proxy (here, in the test) that refuses every WebSocket
  // upgrade and passes every other request, streams included.
  it('behind a proxy that refuses WebSockets, the app falls back to SSE and ConnectionStatus shows it', async () => {
    let refused = 0;
    const proxy: Server = createServer((req, res) => {
      const up = request({ host: '127.0.0.1', port: hub.port, method: req.method, path: req.url, headers: req.headers }, (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      });
      up.on('error', () => res.destroy());
      res.on('close', () => up.destroy());
      req.pipe(up);
    });
    proxy.on('upgrade', (_req, socket) => {
      refused++;
      socket.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const { port } = proxy.address() as { port: number };
    const ctx = await browser.newContext();
    const errors: string[] = [];
    const open = async (name: string, ws: string): Promise<Page> => {
      const p = await ctx.newPage();
      p.on('pageerror', (e) => errors.push(`${name}: ${e.message}`));
      await p.goto(`${site.origin}/?hub=${encodeURIComponent(ws)}&session=room-2&name=${name}&role=learner`);
      return p;
    };
    try {
      const ada = await open('Ada', hub.ws); // a WebSocket, straight to the hub
      const grace = await open('Grace', `ws://127.0.0.1:${port}/ws`); // through the proxy
      await expect.poll(() => names(grace), T).toEqual(['Ada', 'Grace']);
      await expect.poll(() => names(ada), T).toEqual(['Ada', 'Grace']);
      const shown = grace.locator('header .sh-connection-status:not(.sh-compact)');
      expect(await shown.getAttribute('data-status')).toBe('connected');
      expect(await shown.getAttribute('data-transport')).toBe('sse');
      expect(await shown.locator('.sh-transport').textContent()).toBe('via SSE fallback');
      expect(await ada.locator('header .sh-connection-status:not(.sh-compact)').getAttribute('data-transport')).toBe('websocket');
      expect(await ada.locator('header .sh-connection-status .sh-transport').count()).toBe(0);
      expect(refused).toBeGreaterThanOrEqual(2);

      // Grace's caret reaches Ada over the fallback.
      await grace.locator('#code').click();
      await grace.evaluate(() => (document.querySelector('#code') as HTMLTextAreaElement).setSelectionRange(0, 0));
      await grace.keyboard.press('ArrowDown');
      await expect.poll(() => ada.locator('#carets li').allTextContents(), T).toEqual(['Grace 2:1']);
      expect(errors).toEqual([]);
    } finally {
      await ctx.close();
      proxy.closeAllConnections();
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
    }
  });
});
