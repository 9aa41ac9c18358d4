// A store's Lua script as a command of the user's client: registered once per client (`defineCommand`, so
// EVALSHA with a fallback to EVAL), shared by every store of that kind on it.

import type { Redis } from 'ioredis'
import type { RedisClient } from '../rate-limit-store.js'

/** The command `name` running `lua` on one key, bound to `client`; defined on the client the first time. */
export function scriptCommand<F extends (...args: never[]) => Promise<unknown>>(
  client: RedisClient,
  name: string,
  lua: string,
): F {
  const commands = client as unknown as Record<string, unknown>
  if (typeof commands[name] !== 'function') (client as Redis).defineCommand(name, { numberOfKeys: 1, lua })
  return (commands[name] as F).bind(client) as F
}
