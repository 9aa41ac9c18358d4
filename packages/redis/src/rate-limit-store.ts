// RedisRateLimitStore: rate-limit state shared by every process that talks to one Redis (or Redis Cluster).
// One EVALSHA per key per event-loop turn, timed by Redis's clock, on the user's own ioredis client.

import { createHash } from 'node:crypto'
import type { Algorithm, RateLimitResult, RateLimitStore, ResolvedRule, RuleResult } from '@breakwater/core'
import type { Cluster, Redis } from 'ioredis'
import { ruleSuffix, taggedKey } from './internal/key-layout.js'
import { RATE_LIMIT_LUA } from './internal/rate-limit-script.js'
import { checkClient, checkPrefix } from './internal/store-options.js'

/** An ioredis client: a single-node `Redis` (also via Sentinel) or a `Cluster`. */
export type RedisClient = Redis | Cluster

/** Options of {@link RedisRateLimitStore}. */
export interface RedisRateLimitStoreOptions {
  /** Your ioredis `Redis` or `Cluster` client. The store never connects, quits or reconfigures it. Required. */
  client: RedisClient
  /** Prepended to every key. Default `"bw:"`. Must not contain `{` or `}` (they would steal the hash tag). */
  prefix?: string
}

/** A script command as ioredis `defineCommand` creates it. */
type ScriptCommand = (...args: unknown[]) => Promise<unknown>

/** What a rules array turns into, computed once per array (core reuses the array of static limits). */
interface Plan {
  /** `}:<rule>` per rule. */
  readonly suffixes: readonly string[]
  /** Four script arguments per rule: algorithm letter, limit, window ms, burst. */
  readonly ruleArgs: readonly string[]
}

const ALGORITHM_CODES: Record<Algorithm, string> = { gcra: 'g', 'fixed-window': 'f', 'sliding-window': 's' }
/** Per script version: two package copies on one client never run each other's script under one name. */
const COMMAND_PREFIX = `breakwaterRateLimit_${createHash('sha1').update(RATE_LIMIT_LUA).digest('hex').slice(0, 10)}_`
const CHARGE = '1'
const REPORT = '0'
const REFUND = '2'
/**
 * Most consumes coalesced into one script call. Bounds the script's run time (Redis is single-threaded) and
 * the reply size; a full batch is sent at once and the next one starts.
 */
const MAX_BATCH = 64

/** Concurrent consumes of one key with one rules array, waiting to be sent as one script call. */
interface Batch {
  readonly key: string
  readonly rules: readonly ResolvedRule[]
  /** The costs in call order, run-length encoded: cost, count, cost, count… (usually one pair). */
  readonly costs: number[]
  readonly resolves: Array<(result: RateLimitResult) => void>
  readonly rejects: Array<(error: unknown) => void>
}

/** A refund waiting for the end of the event-loop turn. */
interface Refund {
  readonly key: string
  readonly rules: readonly ResolvedRule[]
  readonly cost: number
  readonly chargedMsAgo: number
  readonly resolve: () => void
  readonly reject: (error: unknown) => void
}

const plans = new WeakMap<readonly ResolvedRule[], Plan>()
const NO_RULES: RateLimitResult = Object.freeze({ allowed: true, retryAfterMs: 0, rules: Object.freeze([]) })

/**
 * Rate-limit store on Redis, for limits shared by several processes or hosts. Each decision — every rule of a
 * key at once — is one Lua script call (EVALSHA) that reads the time from Redis, so application clocks cannot
 * skew limits. All keys of one client key share a `{hash tag}`, so it works on Redis Cluster.
 *
 * It uses your ioredis client and never opens or closes connections; `shutdown()` leaves the client alone.
 * Recommended client settings: `enableOfflineQueue: false`, `maxRetriesPerRequest: 1`,
 * `enableAutoPipelining: true` (see the README). Every call is also bounded by the limiter's `storeTimeoutMs`
 * and its `onStoreError` policy, so a slow or dead Redis never makes requests slow.
 *
 * @example
 * import { Redis } from 'ioredis'
 * import { RedisRateLimitStore } from '@breakwater/redis'
 * import { createRateLimiter } from '@breakwater/core'
 *
 * const client = new Redis({ enableOfflineQueue: false, maxRetriesPerRequest: 1, enableAutoPipelining: true })
 * const limiter = createRateLimiter({ limit: 100, windowMs: '1m', store: new RedisRateLimitStore({ client }) })
 */
export class RedisRateLimitStore implements RateLimitStore {
  readonly local = false
  /** The key prefix in use. */
  readonly prefix: string
  readonly #client: RedisClient
  /** Script command per number of rules (index), bound to the client. */
  readonly #commands: Array<ScriptCommand | undefined> = []
  /** Consumes waiting for the end of this event-loop turn, by key. */
  readonly #batches = new Map<string, Batch>()
  /**
   * A single-node client: the store does its own pipelining (see {@link RedisRateLimitStore.#define}). A Cluster keeps
   * ioredis's auto-pipelining, which groups commands by node.
   */
  readonly #ownPipelining: boolean
  /** Refunds waiting for the end of this event-loop turn: sent after the turn's consumes, in the same pipeline. */
  #refunds: Refund[] = []
  #flushScheduled = false
  readonly #flush = (): void => {
    this.#flushScheduled = false
    const batches = this.#batches
    const refunds = this.#refunds
    if (refunds.length > 0) this.#refunds = []
    if (batches.size + refunds.length > 1 && this.#ownPipelining) this.#sendPipelined(batches, refunds)
    else {
      for (const batch of batches.values()) this.#send(batch)
      for (const refund of refunds) this.#sendRefund(refund)
    }
    batches.clear()
  }

  constructor(options: RedisRateLimitStoreOptions) {
    const client = checkClient(options, 'RedisRateLimitStore')
    const prefix = checkPrefix(options.prefix)
    this.#client = client as RedisClient
    this.prefix = prefix
    this.#ownPipelining = (client as { isCluster?: unknown }).isCluster !== true
  }

  /**
   * Charge `cost` units against every rule of `key` if all of them allow it; otherwise charge nothing.
   * Consumes of one key (with the same rules array) made in one event-loop turn travel as one script call (at
   * most {@link MAX_BATCH}), decided in call order exactly as if they had been sent one by one.
   */
  consume(key: string, rules: readonly ResolvedRule[], cost: number): Promise<RateLimitResult> {
    if (rules.length === 0) return Promise.resolve(NO_RULES)
    const batches = this.#batches
    let batch = batches.get(key)
    if (batch !== undefined && (batch.rules !== rules || batch.resolves.length >= MAX_BATCH)) {
      // Sent now, so it still reaches Redis before anything this call starts: call order is kept.
      batches.delete(key)
      this.#send(batch)
      batch = undefined
    }
    if (batch === undefined) {
      batch = { key, rules, costs: [], resolves: [], rejects: [] }
      batches.set(key, batch)
      this.#scheduleFlush()
    }
    const pending = batch
    const costs = pending.costs
    const last = costs.length - 2
    if (last >= 0 && costs[last] === cost) costs[last + 1] = (costs[last + 1] as number) + 1
    else costs.push(cost, 1)
    return new Promise<RateLimitResult>((resolve, reject) => {
      pending.resolves.push(resolve)
      pending.rejects.push(reject)
    })
  }

  /** What `consume` would answer, without writing anything. Sent at once, not batched. */
  peek(key: string, rules: readonly ResolvedRule[], cost: number): Promise<RateLimitResult> {
    const n = rules.length
    if (n === 0) return Promise.resolve(NO_RULES)
    const plan = planOf(rules)
    this.#sendWaiting(key)
    return this.#command(n)(this.#keys(key, plan), REPORT, plan.ruleArgs, cost, 1).then(toResult)
  }

  /**
   * Give back `cost` units charged `chargedMsAgo` ms ago to every rule of `key`, in one script call on Redis's
   * clock (the same script as consume, so the same hash tag and TIME rules). Sent at the end of this event-loop
   * turn, after the turn's consumes and in the same pipeline as them (one write for all), so a refund never
   * overtakes the charge it gives back.
   */
  refund(key: string, rules: readonly ResolvedRule[], cost: number, chargedMsAgo: number): Promise<void> {
    if (rules.length === 0 || cost <= 0) return Promise.resolve()
    return new Promise<void>((resolve, reject) => {
      this.#refunds.push({ key, rules, cost, chargedMsAgo: Math.max(0, chargedMsAgo), resolve, reject })
      this.#scheduleFlush()
    })
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled) return
    this.#flushScheduled = true
    // setImmediate, not a microtask: it runs after the poll phase, so it gathers every request read in this
    // turn (ioredis's auto-pipelining waits for the same moment).
    setImmediate(this.#flush)
  }

  #refundArgs(refund: Refund): unknown[] {
    const plan = planOf(refund.rules)
    return [this.#keys(refund.key, plan), REFUND, plan.ruleArgs, refund.cost, refund.chargedMsAgo]
  }

  #sendRefund(refund: Refund): void {
    let sent: Promise<unknown>
    try {
      sent = this.#command(refund.rules.length)(...this.#refundArgs(refund))
    } catch (error) {
      refund.reject(error)
      return
    }
    sent.then(() => refund.resolve(), refund.reject)
  }

  /** Delete the state of every rule of `key` (one DEL: the keys share a slot). */
  reset(key: string, rules: readonly ResolvedRule[]): Promise<void> {
    if (rules.length === 0) return Promise.resolve()
    this.#sendWaiting(key)
    return this.#client.del(this.#keys(key, planOf(rules))).then(noop)
  }

  /** Nothing to release: the client is yours, and stays open. */
  shutdown(): void {}

  /** Send the consumes of `key` still waiting, so a later peek or reset does not overtake them. */
  #sendWaiting(key: string): void {
    const batch = this.#batches.get(key)
    if (batch === undefined) return
    this.#batches.delete(key)
    this.#send(batch)
  }

  #send(batch: Batch): void {
    let sent: Promise<unknown>
    try {
      sent = this.#command(batch.rules.length)(...this.#argsOf(batch))
    } catch (error) {
      rejectAll(batch, error)
      return
    }
    sent.then(
      (reply) => settle(batch, reply),
      (error: unknown) => rejectAll(batch, error),
    )
  }

  /** Several keys' batches, then the turn's refunds, in one pipeline: one write and one read for all of them. */
  #sendPipelined(batches: Map<string, Batch>, refunds: readonly Refund[]): void {
    const list = [...batches.values()]
    const failAll = (error: unknown): void => {
      for (const batch of list) rejectAll(batch, error)
      for (const refund of refunds) refund.reject(error)
    }
    let exec: Promise<Array<[Error | null, unknown]> | null>
    try {
      // Defined before the pipeline copies them.
      for (const batch of list) this.#command(batch.rules.length)
      for (const refund of refunds) this.#command(refund.rules.length)
      const pipeline = (this.#client as Redis).pipeline() as unknown as Record<string, ScriptCommand> & {
        exec(): Promise<Array<[Error | null, unknown]> | null>
      }
      for (const batch of list) {
        const command = pipeline[COMMAND_PREFIX + batch.rules.length] as ScriptCommand
        command.apply(pipeline, this.#argsOf(batch))
      }
      for (const refund of refunds) {
        const command = pipeline[COMMAND_PREFIX + refund.rules.length] as ScriptCommand
        command.apply(pipeline, this.#refundArgs(refund))
      }
      exec = pipeline.exec()
    } catch (error) {
      failAll(error)
      return
    }
    exec.then((results) => {
      const discarded = new Error('The pipeline of rate-limit scripts was discarded')
      for (let i = 0; i < list.length; i++) {
        const batch = list[i] as Batch
        const result = results?.[i]
        if (result === undefined) rejectAll(batch, discarded)
        else if (result[0] !== null) rejectAll(batch, result[0])
        else settle(batch, result[1])
      }
      for (let i = 0; i < refunds.length; i++) {
        const refund = refunds[i] as Refund
        const result = results?.[list.length + i]
        if (result === undefined) refund.reject(discarded)
        else if (result[0] !== null) refund.reject(result[0])
        else refund.resolve()
      }
    }, failAll)
  }

  /**
   * The script arguments of one batch. ioredis flattens array arguments; the fixed key count makes the first key
   * the first argument, which is what Cluster auto-pipelining groups by.
   */
  #argsOf(batch: Batch): unknown[] {
    const plan = planOf(batch.rules)
    return [this.#keys(batch.key, plan), CHARGE, plan.ruleArgs, batch.costs]
  }

  #command(n: number): ScriptCommand {
    return this.#commands[n] ?? this.#define(n)
  }

  #keys(key: string, plan: Plan): string[] {
    const tagged = taggedKey(this.prefix, key)
    const suffixes = plan.suffixes
    const keys = new Array<string>(suffixes.length)
    for (let i = 0; i < suffixes.length; i++) keys[i] = tagged + suffixes[i]
    return keys
  }

  /**
   * Register the script for `n` keys on the client, once: other stores on the same client reuse it.
   *
   * On a single-node client with `enableAutoPipelining`, the command is added to that client's
   * `autoPipeliningIgnoredCommands`: the store already turns one event-loop turn of requests into one script
   * call per key (and one pipeline for several keys), and auto-pipelining a lone command on top costs a pipeline
   * per turn for nothing: 12% of the server CPU per request on the Fastify benchmark, measured. Only this command is
   * affected; your own commands are pipelined as before.
   */
  #define(n: number): ScriptCommand {
    const name = COMMAND_PREFIX + n
    const client = this.#client
    const commands = client as unknown as Record<string, ScriptCommand | undefined>
    if (typeof commands[name] !== 'function') {
      client.defineCommand(name, { numberOfKeys: n, lua: RATE_LIMIT_LUA })
    }
    const options = (
      client as { options?: { enableAutoPipelining?: boolean; autoPipeliningIgnoredCommands?: unknown } }
    ).options
    const ignored = options?.autoPipeliningIgnoredCommands
    if (this.#ownPipelining && options?.enableAutoPipelining === true && Array.isArray(ignored)) {
      // A new array: ioredis's defaults share one array between clients.
      if (!ignored.includes(name)) options.autoPipeliningIgnoredCommands = [...ignored, name]
    }
    const command = (commands[name] as ScriptCommand).bind(this.#client)
    this.#commands[n] = command
    return command
  }
}

function planOf(rules: readonly ResolvedRule[]): Plan {
  let plan = plans.get(rules)
  if (plan === undefined) {
    const suffixes: string[] = []
    const ruleArgs: string[] = []
    for (const rule of rules) {
      suffixes.push(ruleSuffix(rule.name))
      ruleArgs.push(ALGORITHM_CODES[rule.algorithm], String(rule.limit), String(rule.windowMs), String(rule.burst))
    }
    plan = { suffixes, ruleArgs }
    plans.set(rules, plan)
  }
  return plan
}

/** Resolve every consume of `batch` from its script reply: three values per rule per consume, in call order. */
function settle(batch: Batch, reply: unknown): void {
  const n = batch.rules.length
  const resolves = batch.resolves
  if (!Array.isArray(reply) || reply.length !== 3 * n * resolves.length) {
    rejectAll(batch, new Error(`Unexpected reply from the rate-limit script: ${JSON.stringify(reply)}`))
    return
  }
  for (let i = 0; i < resolves.length; i++) (resolves[i] as (r: RateLimitResult) => void)(parse(reply, i * 3 * n, n))
}

function rejectAll(batch: Batch, error: unknown): void {
  for (const reject of batch.rejects) reject(error)
}

/** Parse a peek's reply: `allowed, remaining, resetMs` per rule. */
function toResult(reply: unknown): RateLimitResult {
  if (!Array.isArray(reply) || reply.length === 0 || reply.length % 3 !== 0) {
    throw new Error(`Unexpected reply from the rate-limit script: ${JSON.stringify(reply)}`)
  }
  return parse(reply, 0, reply.length / 3)
}

/** One decision out of a reply: `allowed, remaining, resetMs` for each of `n` rules, from index `start`. */
function parse(reply: unknown[], start: number, n: number): RateLimitResult {
  const rules = new Array<RuleResult>(n)
  let allowed = true
  let retryAfterMs = 0
  for (let i = 0; i < n; i++) {
    const o = start + i * 3
    const ruleAllowed = reply[o] === 1
    const resetMs = Number(reply[o + 2])
    rules[i] = { allowed: ruleAllowed, remaining: reply[o + 1] as number, resetMs }
    if (!ruleAllowed) {
      allowed = false
      if (resetMs > retryAfterMs) retryAfterMs = resetMs
    }
  }
  return { allowed, retryAfterMs: allowed ? 0 : retryAfterMs, rules }
}

function noop(): void {}
