// RedisRateLimitStore: rate-limit state shared by every process that talks to one Redis (or Redis Cluster).
// One EVALSHA per event-loop turn for every key it decided (per hash slot on a Cluster), timed by Redis's clock,
// on the user's own ioredis client.

import { createHash } from 'node:crypto'
import type { Algorithm, RateLimitResult, RateLimitStore, ResolvedRule, RuleResult } from '@breakwater/core'
import calculateSlot from 'cluster-key-slot'
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

/** A script command as ioredis `defineCommand` creates it (no fixed key count: the first argument is it). */
type ScriptCommand = (...args: unknown[]) => Promise<unknown>

/** What a rules array turns into, computed once per array (core reuses the array of static limits). */
interface Plan {
  /** `}:<rule>` per rule. */
  readonly suffixes: readonly string[]
  /** The rule count, then four script arguments per rule: algorithm letter, limit, window ms, burst. */
  readonly ruleArgs: readonly string[]
}

const ALGORITHM_CODES: Record<Algorithm, string> = { gcra: 'g', 'fixed-window': 'f', 'sliding-window': 's' }
/** Per script version: two package copies on one client never run each other's script under one name. */
const COMMAND = `breakwaterRateLimit_${createHash('sha1').update(RATE_LIMIT_LUA).digest('hex').slice(0, 10)}`
const CHARGE = '1'
const REPORT = '0'
const REFUND = '2'
/**
 * Most decisions (consumes and refunds) in one script call. Bounds the script's run time (Redis is
 * single-threaded) and the reply size; a full call is sent at once and the next one starts.
 */
const MAX_BATCH = 128

/** Decisions of one key with one rules array (concurrent consumes, or one peek), sent as one group of a call. */
interface Batch {
  readonly key: string
  readonly rules: readonly ResolvedRule[]
  /** {@link CHARGE} or {@link REPORT}. */
  readonly op: string
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

/** One script call being assembled: groups of keys of one hash slot (of any keys, on a single node). */
interface Call {
  /** The hash slot of every key in it (0 on a single node). */
  readonly slot: number
  readonly keys: string[]
  readonly args: Array<string | number>
  readonly batches: Batch[]
  readonly refunds: Refund[]
  /** Decisions in it: requests of every batch, plus the refunds. */
  decisions: number
  /** Reply values expected: three per rule per request of every batch. */
  replyLength: number
}

const plans = new WeakMap<readonly ResolvedRule[], Plan>()
const NO_RULES: RateLimitResult = Object.freeze({ allowed: true, retryAfterMs: 0, rules: Object.freeze([]) })

/**
 * Rate-limit store on Redis, for limits shared by several processes or hosts: exact, every decision made in
 * Redis. Each decision — every rule of a key at once — is atomic, in a Lua script that reads the time from Redis,
 * so application clocks cannot skew limits. The decisions of one event-loop turn are coalesced into one script
 * call (EVALSHA) for all their keys, at most 128 per call — one call per hash slot on a Redis Cluster, where all
 * keys of one client key share a `{hash tag}`. A failed call fails each decision in it, and each then gets the
 * limiter's `onStoreError` policy.
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
  /** The script command, bound to the client, once defined. */
  #command: ScriptCommand | undefined
  /** Consumes waiting for the end of this event-loop turn, by key. */
  readonly #batches = new Map<string, Batch>()
  /** A Cluster client: a call holds the keys of one hash slot only, so a turn's decisions go out per slot. */
  readonly #cluster: boolean
  /** Refunds waiting for the end of this event-loop turn: sent after the turn's consumes, in the same calls. */
  #refunds: Refund[] = []
  #flushScheduled = false
  readonly #flush = (): void => {
    this.#flushScheduled = false
    const batches = this.#batches
    const refunds = this.#refunds
    if (refunds.length > 0) this.#refunds = []
    // The call being filled, per hash slot (one, slot 0, on a single node), and the calls filled.
    const open = new Map<number, Call>()
    const full: Call[] = []
    const add = (slot: number, decisions: number): Call => {
      let call = open.get(slot)
      if (call !== undefined && call.decisions + decisions > MAX_BATCH) {
        full.push(call)
        call = undefined
      }
      if (call === undefined) {
        call = newCall(slot)
        open.set(slot, call)
      }
      return call
    }
    for (const batch of batches.values()) {
      const tagged = taggedKey(this.prefix, batch.key)
      this.#addBatch(add(this.#slotOf(tagged), batch.resolves.length), batch, tagged)
    }
    batches.clear()
    for (const refund of refunds) {
      const tagged = taggedKey(this.prefix, refund.key)
      addRefund(add(this.#slotOf(tagged), 1), refund, tagged)
    }
    for (const call of open.values()) full.push(call)
    // On a Cluster too, each slot's call goes through the client, which follows MOVED/ASK redirections during a
    // failover; a hand-made pipeline per node did not recover reliably (test/redis-failure/cluster-failover).
    for (const call of full) this.#send(call)
  }

  constructor(options: RedisRateLimitStoreOptions) {
    const client = checkClient(options, 'RedisRateLimitStore')
    const prefix = checkPrefix(options.prefix)
    this.#client = client as RedisClient
    this.prefix = prefix
    this.#cluster = (client as { isCluster?: unknown }).isCluster === true
  }

  /**
   * Charge `cost` units against every rule of `key` if all of them allow it; otherwise charge nothing.
   * Consumes made in one event-loop turn travel together: those of one key (with the same rules array) as one
   * group, decided in call order exactly as if they had been sent one by one, and the groups of every key as
   * one script call (per hash slot on a Cluster), at most {@link MAX_BATCH} decisions per call.
   */
  consume(key: string, rules: readonly ResolvedRule[], cost: number): Promise<RateLimitResult> {
    if (rules.length === 0) return Promise.resolve(NO_RULES)
    const batches = this.#batches
    let batch = batches.get(key)
    if (batch !== undefined && (batch.rules !== rules || batch.resolves.length >= MAX_BATCH)) {
      // Sent now, so it still reaches Redis before anything this call starts: call order is kept.
      batches.delete(key)
      this.#sendAlone(batch)
      batch = undefined
    }
    if (batch === undefined) {
      batch = { key, rules, op: CHARGE, costs: [], resolves: [], rejects: [] }
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
    if (rules.length === 0) return Promise.resolve(NO_RULES)
    this.#sendWaiting(key)
    return new Promise<RateLimitResult>((resolve, reject) => {
      this.#sendAlone({ key, rules, op: REPORT, costs: [cost, 1], resolves: [resolve], rejects: [reject] })
    })
  }

  /**
   * Give back `cost` units charged `chargedMsAgo` ms ago to every rule of `key`, atomically on Redis's clock
   * (the same script as consume, so the same hash tag and TIME rules). Sent at the end of this event-loop turn,
   * after the turn's consumes and in the same script calls as them, so a refund never overtakes the charge it
   * gives back.
   */
  refund(key: string, rules: readonly ResolvedRule[], cost: number, chargedMsAgo: number): Promise<void> {
    if (rules.length === 0 || cost <= 0) return Promise.resolve()
    return new Promise<void>((resolve, reject) => {
      this.#refunds.push({ key, rules, cost, chargedMsAgo: Math.max(0, chargedMsAgo), resolve, reject })
      this.#scheduleFlush()
    })
  }

  /** Delete the state of every rule of `key` (one DEL: the keys share a slot). */
  reset(key: string, rules: readonly ResolvedRule[]): Promise<void> {
    if (rules.length === 0) return Promise.resolve()
    this.#sendWaiting(key)
    const tagged = taggedKey(this.prefix, key)
    return this.#client.del(planOf(rules).suffixes.map((suffix) => tagged + suffix)).then(noop)
  }

  /** Nothing to release: the client is yours, and stays open. */
  shutdown(): void {}

  #scheduleFlush(): void {
    if (this.#flushScheduled) return
    this.#flushScheduled = true
    // setImmediate, not a microtask: it runs after the poll phase, so it gathers every request read in this
    // turn (ioredis's auto-pipelining waits for the same moment).
    setImmediate(this.#flush)
  }

  /** The hash slot of a key's group: what a Cluster call must share (a single node has one call: slot 0). */
  #slotOf(tagged: string): number {
    // `<prefix>{<key>}` hashes as every rule key of it does: the hash tag decides.
    return this.#cluster ? calculateSlot(`${tagged}}`) : 0
  }

  /** Send the consumes of `key` still waiting, so a later peek or reset does not overtake them. */
  #sendWaiting(key: string): void {
    const batch = this.#batches.get(key)
    if (batch === undefined) return
    this.#batches.delete(key)
    this.#sendAlone(batch)
  }

  /** One batch as a call of its own, now. */
  #sendAlone(batch: Batch): void {
    const tagged = taggedKey(this.prefix, batch.key)
    const call = newCall(this.#slotOf(tagged))
    this.#addBatch(call, batch, tagged)
    this.#send(call)
  }

  #addBatch(call: Call, batch: Batch, tagged: string): void {
    const plan = planOf(batch.rules)
    const keys = call.keys
    for (const suffix of plan.suffixes) keys.push(tagged + suffix)
    const args = call.args
    args.push(batch.op)
    for (const arg of plan.ruleArgs) args.push(arg)
    const costs = batch.costs
    args.push(costs.length / 2)
    for (const cost of costs) args.push(cost)
    call.batches.push(batch)
    call.decisions += batch.resolves.length
    call.replyLength += 3 * plan.suffixes.length * batch.resolves.length
  }

  /**
   * One EVALSHA for every group of the call. ioredis flattens the two arrays; the key count comes first, so a
   * Cluster client routes the call by its keys (one slot) and auto-pipelines it with the node's other commands.
   */
  #send(call: Call): void {
    let sent: Promise<unknown>
    try {
      sent = (this.#command ?? this.#define())(call.keys.length, call.keys, call.args)
    } catch (error) {
      failCall(call, error)
      return
    }
    sent.then(
      (reply) => settleCall(call, reply),
      (error: unknown) => failCall(call, error),
    )
  }

  /**
   * Register the script on the client, once: other stores on the same client reuse it.
   *
   * On a client with `enableAutoPipelining`, the command is added to that client's
   * `autoPipeliningIgnoredCommands`. On a single node the store already turns one event-loop turn of requests
   * into one script call, and auto-pipelining a lone command on top costs a pipeline per turn for nothing: 12% of
   * the server CPU per request on the Fastify benchmark, measured. On a Cluster, auto-pipelining would group the
   * command by its first argument, the key count, not by a key; the store pipelines a turn's calls per node
   * itself. Only this command is affected; your own commands are pipelined as before.
   */
  #define(): ScriptCommand {
    const client = this.#client
    const commands = client as unknown as Record<string, ScriptCommand | undefined>
    if (typeof commands[COMMAND] !== 'function') client.defineCommand(COMMAND, { lua: RATE_LIMIT_LUA })
    const options = (
      client as { options?: { enableAutoPipelining?: boolean; autoPipeliningIgnoredCommands?: unknown } }
    ).options
    const ignored = options?.autoPipeliningIgnoredCommands
    if (options?.enableAutoPipelining === true && Array.isArray(ignored)) {
      // A new array: ioredis's defaults share one array between clients.
      if (!ignored.includes(COMMAND)) options.autoPipeliningIgnoredCommands = [...ignored, COMMAND]
    }
    const command = (commands[COMMAND] as ScriptCommand).bind(client)
    this.#command = command
    return command
  }
}

function newCall(slot: number): Call {
  return { slot, keys: [], args: [], batches: [], refunds: [], decisions: 0, replyLength: 0 }
}

function addRefund(call: Call, refund: Refund, tagged: string): void {
  const plan = planOf(refund.rules)
  for (const suffix of plan.suffixes) call.keys.push(tagged + suffix)
  const args = call.args
  args.push(REFUND)
  for (const arg of plan.ruleArgs) args.push(arg)
  args.push(refund.cost, refund.chargedMsAgo)
  call.refunds.push(refund)
  call.decisions++
}

function planOf(rules: readonly ResolvedRule[]): Plan {
  let plan = plans.get(rules)
  if (plan === undefined) {
    const suffixes: string[] = []
    const ruleArgs: string[] = [String(rules.length)]
    for (const rule of rules) {
      suffixes.push(ruleSuffix(rule.name))
      ruleArgs.push(ALGORITHM_CODES[rule.algorithm], String(rule.limit), String(rule.windowMs), String(rule.burst))
    }
    plan = { suffixes, ruleArgs }
    plans.set(rules, plan)
  }
  return plan
}

/**
 * Resolve every decision of `call` from its reply: for each batch in order, three values per rule per request.
 * A reply of the wrong shape fails the whole call (each decision then gets the limiter's failure policy).
 */
function settleCall(call: Call, reply: unknown): void {
  if (!Array.isArray(reply) || reply.length !== call.replyLength) {
    failCall(call, new Error(`Unexpected reply from the rate-limit script: ${JSON.stringify(reply)}`))
    return
  }
  let start = 0
  for (const batch of call.batches) {
    const n = batch.rules.length
    const resolves = batch.resolves
    for (let i = 0; i < resolves.length; i++) {
      ;(resolves[i] as (r: RateLimitResult) => void)(parse(reply, start, n))
      start += 3 * n
    }
  }
  for (const refund of call.refunds) refund.resolve()
}

function failCall(call: Call, error: unknown): void {
  for (const batch of call.batches) for (const reject of batch.rejects) reject(error)
  for (const refund of call.refunds) refund.reject(error)
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
