// Child processes (workers, servers) run bundles of the packages' current sources, not their dist, which may be
// stale. The bundle is written to ./dist beside its entry (gitignored), inside the repository so its external
// imports (the frameworks, ioredis) resolve through test/node_modules.

import { basename, dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { build } from 'tsup'

const PACKAGES = ['core', 'redis', 'express', 'fastify', 'koa']
const source = (name: string): string => fileURLToPath(new URL(`../../packages/${name}/src/index.ts`, import.meta.url))

/** Bundle `entry` (an absolute .ts path) for `fork()`; resolves to the path of the bundled .js file. */
export async function bundleForChild(entry: string): Promise<string> {
  const name = basename(entry, '.ts')
  const outDir = join(dirname(entry), 'dist')
  await build({
    entry: { [name]: entry },
    format: ['esm'],
    outDir,
    platform: 'node',
    target: 'node20',
    config: false,
    silent: true,
    dts: false,
    sourcemap: false,
    clean: false,
    external: ['ioredis', 'express', 'fastify', 'koa', '@koa/router'],
    noExternal: [/^@breakwater\//, 'fastify-plugin'],
    esbuildOptions(options) {
      // The subpath first: esbuild would otherwise append `/adapter` to core's aliased index.ts.
      options.alias = {
        '@breakwater/core/adapter': source('core').replace(/index\.ts$/, 'adapter.ts'),
        ...Object.fromEntries(PACKAGES.map((pkg) => [`@breakwater/${pkg}`, source(pkg)])),
      }
    },
  })
  return join(outDir, `${name}.js`)
}
