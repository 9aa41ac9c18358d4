import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vitest/config'

// Tests import the packages' sources, so one copy of each module is loaded and no build is needed to test.
// The packaging suite (test/packaging) is the one place that loads the built dist files.
const src = (name: string) => fileURLToPath(new URL(`./packages/${name}/src/index.ts`, import.meta.url))

export default defineConfig({
  resolve: {
    // The subpath comes first: an alias also matches the paths under its key.
    alias: {
      '@breakwater/core/adapter': fileURLToPath(new URL('./packages/core/src/adapter.ts', import.meta.url)),
      '@breakwater/core': src('core'),
      '@breakwater/redis': src('redis'),
      '@breakwater/express': src('express'),
      '@breakwater/fastify': src('fastify'),
      '@breakwater/koa': src('koa'),
      '@breakwater/otel': src('otel'),
      '@breakwater/undici': src('undici'),
    },
  },
  test: {
    projects: [
      { extends: true, test: { name: 'unit', include: ['packages/*/test/**/*.test.ts'] } },
      {
        extends: true,
        test: {
          name: 'integration',
          include: ['test/**/*.test.ts'],
          globalSetup: ['test/support/global-setup.ts'],
          testTimeout: 30_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
})
