// Fastify hands a plugin its `register()` options together with the plugin's own: `prefix`, `logLevel` and
// `logSerializers` are Fastify's, so they are taken out before the policy checks for unknown option keys.

/** `options` without Fastify's own `register()` options. */
export function policyOptions<T extends object>(options: T): T {
  const { prefix, logLevel, logSerializers, ...own } = options as T & {
    prefix?: unknown
    logLevel?: unknown
    logSerializers?: unknown
  }
  return own as T
}
