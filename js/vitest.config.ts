import { defineConfig } from 'vitest/config';

// One file at a time: the suite starts real hubd processes and Chromium, and
// CI shares a small machine. Every wait is on an event or a condition, with
// these timeouts only as the bound of a hang.
export default defineConfig({
  test: {
    include: ['test/**/*.test.{ts,tsx}'],
    globalSetup: ['test/global-setup.ts'],
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 120_000,
    reporters: ['default'],
  },
  esbuild: { jsx: 'automatic' },
});
