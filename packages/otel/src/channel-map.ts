// The map from every Breakwater channel to what it records: counters, gauges, histograms, span attributes.
// Payload types are core's own (`@breakwater/core` exports one per channel).

import type {
  BulkheadDecisionEvent,
  BulkheadLimitEvent,
  CircuitBreakerCallEvent,
  CircuitBreakerStateEvent,
  DependencyAttemptEvent,
  DependencyCallEvent,
  FallbackServedEvent,
  HealthCheckEvent,
  HealthProbeEvent,
  HedgeLaunchedEvent,
  HedgeSettledEvent,
  IdempotencyDecisionEvent,
  IdempotencySettledEvent,
  LoadSheddingDecisionEvent,
  LoadSheddingLimitEvent,
  LoadSheddingPressureEvent,
  RateLimitDecisionEvent,
  RateLimitRefundEvent,
  RequestView,
  RetryBudgetExhaustedEvent,
  RetryScheduledEvent,
  ShutdownPhaseEvent,
  StaleServedEvent,
  StoreErrorEvent,
  TimeoutDecisionEvent,
  TimeoutLateWriteEvent,
  WarningEvent,
} from '@breakwater/core'
import { type Attributes, context, type Span, type Tracer, trace } from '@opentelemetry/api'
import type { Instruments } from './instruments.js'
import type { Series, SeriesTable } from './series.js'
import { spanOf } from './span-target.js'

/** What a handler needs: the instruments and the resolved options. */
export interface HandlerContext {
  readonly instruments: Instruments
  readonly tracer: Tracer
  readonly httpRoute: boolean
  readonly spanAttributes: boolean
  readonly spanEvents: boolean
  readonly internalSpans: boolean
}

type Handler = (message: unknown, ctx: HandlerContext) => void

const CIRCUIT_STATES = ['closed', 'open', 'half_open', 'isolated'] as const

function routeOf(ctx: HandlerContext, request: RequestView | undefined): string {
  return ctx.httpRoute && request !== undefined ? request.path : ''
}

/** The server span of the request, when decisions go on spans and there is one recording. */
function targetSpan(ctx: HandlerContext, request: RequestView | undefined, inContext = true): Span | undefined {
  return ctx.spanAttributes || ctx.spanEvents ? spanOf(request, inContext) : undefined
}

/** Put a decision on the server span: attributes, and an event when asked. */
function annotate(ctx: HandlerContext, span: Span, event: string, attributes: Attributes): void {
  if (ctx.spanAttributes) span.setAttributes(attributes)
  if (ctx.spanEvents) span.addEvent(event, attributes)
}

/** A child span of `parent` covering a wait that just ended, from the event's own timing. */
function waitSpan(
  ctx: HandlerContext,
  parent: Span | undefined,
  name: string,
  seconds: number,
  attributes: Attributes,
): void {
  if (!ctx.internalSpans || parent === undefined || !(seconds > 0)) return
  const end = Date.now()
  const span = ctx.tracer.startSpan(
    name,
    { startTime: end - seconds * 1000, attributes },
    trace.setSpan(context.active(), parent),
  )
  span.end(end)
}

function rateLimitDecision(message: unknown, ctx: HandlerContext): void {
  const event = message as RateLimitDecisionEvent & { dryRun?: boolean }
  const dryRun = event.dryRun === true
  const route = routeOf(ctx, event.request)
  const series = countRequest(ctx.instruments.counts.rateLimitRequests, event.policy, event.outcome, dryRun, route)
  // Core times only calls to a remote store (0 otherwise): in-process decisions have no store latency to record.
  if (event.durationSeconds > 0) {
    ctx.instruments.histograms.rateLimitDuration.record(event.durationSeconds, series.attributes)
  }
  const span = targetSpan(ctx, event.request)
  if (span === undefined) return
  const attributes: Attributes = {
    'breakwater.rate_limit.policy': event.policy,
    'breakwater.rate_limit.outcome': event.outcome,
  }
  if (dryRun) attributes['breakwater.rate_limit.dry_run'] = true
  annotate(ctx, span, 'breakwater.rate_limit.decision', attributes)
}

/** Count one inbound decision of `policy` with `outcome` (dry-run and route apart). */
function countRequest(table: SeriesTable, policy: string, outcome: string, dryRun: boolean, route: string): Series {
  const flag = dryRun ? '1' : ''
  const series =
    table.find(policy, outcome, flag, route) ??
    table.add(outcomeAttributes(policy, outcome, dryRun, route), policy, outcome, flag, route)
  series.value++
  return series
}

/** `breakwater.policy` and `breakwater.outcome`, with `breakwater.dry_run` and `http.route` when present. */
function outcomeAttributes(policy: string, outcome: string, dryRun: boolean, route: string): Attributes {
  const attributes: Attributes = { 'breakwater.policy': policy, 'breakwater.outcome': outcome }
  if (dryRun) attributes['breakwater.dry_run'] = true
  if (route !== '') attributes['http.route'] = route
  return attributes
}

/** Count one event of `policy` with `outcome` (and an optional `breakwater.reason`). */
function countOutcome(table: SeriesTable, policy: string, outcome: string, reason = ''): Series {
  const series =
    table.find(policy, outcome, reason) ?? table.add(reasonAttributes(policy, outcome, reason), policy, outcome, reason)
  series.value++
  return series
}

function reasonAttributes(policy: string, outcome: string, reason: string): Attributes {
  const attributes: Attributes = { 'breakwater.policy': policy, 'breakwater.outcome': outcome }
  if (reason !== '') attributes['breakwater.reason'] = reason
  return attributes
}

/** Count one event under a single attribute (check, probe, phase, code). */
function countOne(table: SeriesTable, name: string, value: string): void {
  const series = table.find(value) ?? table.add({ [name]: value }, value)
  series.value++
}

function rateLimitRefund(message: unknown, ctx: HandlerContext): void {
  const event = message as RateLimitRefundEvent
  countOutcome(ctx.instruments.counts.rateLimitRefunds, event.policy, event.outcome)
}

function storeError(message: unknown, ctx: HandlerContext): void {
  const event = message as StoreErrorEvent
  const table = ctx.instruments.counts.storeErrors
  const series =
    table.find(event.policy, event.operation, event.kind, event.action) ??
    table.add(
      {
        'breakwater.policy': event.policy,
        'breakwater.store.operation': event.operation,
        'error.type': event.kind,
        'breakwater.store.action': event.action,
      },
      event.policy,
      event.operation,
      event.kind,
      event.action,
    )
  series.value++
}

function warning(message: unknown, ctx: HandlerContext): void {
  countOne(ctx.instruments.counts.warnings, 'breakwater.warning.code', (message as WarningEvent).code)
}

function timeoutDecision(message: unknown, ctx: HandlerContext): void {
  const event = message as TimeoutDecisionEvent
  const route = routeOf(ctx, event.request)
  countRequest(ctx.instruments.counts.timeoutRequests, event.policy, event.outcome, false, route)
  const span = targetSpan(ctx, event.request)
  if (span === undefined) return
  annotate(ctx, span, 'breakwater.timeout.decision', {
    'breakwater.timeout.policy': event.policy,
    'breakwater.timeout.outcome': event.outcome,
    'breakwater.timeout.budget': event.timeoutSeconds,
  })
}

function timeoutLateWrite(message: unknown, ctx: HandlerContext): void {
  const event = message as TimeoutLateWriteEvent
  const table = ctx.instruments.counts.timeoutLateWrites
  const series =
    table.find(event.policy, event.operation) ??
    table.add(
      { 'breakwater.policy': event.policy, 'breakwater.timeout.operation': event.operation },
      event.policy,
      event.operation,
    )
  series.value++
  // The server span has usually ended with the 503 by now; one still open gets it.
  const span = targetSpan(ctx, event.request)
  if (span === undefined) return
  annotate(ctx, span, 'breakwater.timeout.late_write', { 'breakwater.timeout.late_write': event.operation })
}

function healthCheck(message: unknown, ctx: HandlerContext): void {
  const event = message as HealthCheckEvent
  const table = ctx.instruments.counts.healthChecks
  const critical = event.critical ? '1' : ''
  const series =
    table.find(event.check, event.outcome, critical) ??
    table.add(
      {
        'breakwater.health.check': event.check,
        'breakwater.outcome': event.outcome,
        'breakwater.health.critical': event.critical,
      },
      event.check,
      event.outcome,
      critical,
    )
  series.value++
  ctx.instruments.histograms.healthCheckDuration.record(event.durationSeconds, series.attributes)
}

function healthProbe(message: unknown, ctx: HandlerContext): void {
  const event = message as HealthProbeEvent
  const table = ctx.instruments.counts.healthProbes
  const series =
    table.find(event.probe, event.outcome) ??
    table.add(
      { 'breakwater.health.probe': event.probe, 'breakwater.outcome': event.outcome },
      event.probe,
      event.outcome,
    )
  series.value++
  const span = targetSpan(ctx, event.request)
  if (span === undefined) return
  annotate(ctx, span, 'breakwater.health.probe', {
    'breakwater.health.probe': event.probe,
    'breakwater.health.outcome': event.outcome,
  })
}

function shutdownPhase(message: unknown, ctx: HandlerContext): void {
  countOne(ctx.instruments.counts.shutdownPhases, 'breakwater.shutdown.phase', (message as ShutdownPhaseEvent).phase)
}

function idempotencyDecision(message: unknown, ctx: HandlerContext): void {
  const event = message as IdempotencyDecisionEvent
  const series = countRequest(
    ctx.instruments.counts.idempotencyRequests,
    event.policy,
    event.outcome,
    false,
    routeOf(ctx, event.request),
  )
  ctx.instruments.histograms.idempotencyDuration.record(event.durationSeconds, series.attributes)
  const span = targetSpan(ctx, event.request)
  if (span === undefined) return
  annotate(ctx, span, 'breakwater.idempotency.decision', {
    'breakwater.idempotency.policy': event.policy,
    'breakwater.idempotency.outcome': event.outcome,
  })
}

function idempotencySettled(message: unknown, ctx: HandlerContext): void {
  const event = message as IdempotencySettledEvent
  countOutcome(ctx.instruments.counts.idempotencySettled, event.policy, event.outcome, event.reason)
  const span = targetSpan(ctx, event.request)
  if (span === undefined) return
  annotate(ctx, span, 'breakwater.idempotency.settled', { 'breakwater.idempotency.settled': event.outcome })
}

function loadSheddingDecision(message: unknown, ctx: HandlerContext): void {
  const event = message as LoadSheddingDecisionEvent & { dryRun?: boolean }
  const { instruments } = ctx
  const dryRun = event.dryRun === true
  const reason = event.reason ?? ''
  const route = routeOf(ctx, event.request)
  const table = instruments.counts.loadSheddingRequests
  const flag = dryRun ? '1' : ''
  const series =
    table.find(event.policy, event.outcome, reason, event.priority, flag, route) ??
    table.add(
      sheddingAttributes(event, reason, dryRun, route),
      event.policy,
      event.outcome,
      reason,
      event.priority,
      flag,
      route,
    )
  series.value++
  if (event.outcome !== 'skipped') {
    setGauge(instruments.gauges.loadSheddingLimit, event.policy, event.limit)
    setGauge(instruments.gauges.loadSheddingActive, event.policy, event.inflight)
    setGauge(instruments.gauges.loadSheddingQueued, event.policy, event.queued)
  }
  // A wait ends in admitted, shed or abandoned; `queued` only starts one.
  const waited = event.waitSeconds > 0 && event.outcome !== 'queued'
  if (waited) {
    const waits = instruments.waitAttributes
    const wait =
      waits.find(event.policy, event.outcome) ??
      waits.add(reasonAttributes(event.policy, event.outcome, ''), event.policy, event.outcome)
    instruments.histograms.loadSheddingQueueDuration.record(event.waitSeconds, wait.attributes)
  }
  // The end of a wait is published from whatever released a permit or expired it, not from this request.
  const afterQueue =
    event.outcome === 'abandoned' ||
    event.reason === 'queue-timeout' ||
    event.reason === 'evicted' ||
    (event.outcome === 'admitted' && event.waitSeconds > 0)
  const span = targetSpan(ctx, event.request, !afterQueue)
  if (span === undefined) return
  const attributes: Attributes = {
    'breakwater.load_shedding.policy': event.policy,
    'breakwater.load_shedding.outcome': event.outcome,
    'breakwater.load_shedding.priority': event.priority,
  }
  if (reason !== '') attributes['breakwater.load_shedding.reason'] = reason
  if (dryRun) attributes['breakwater.load_shedding.dry_run'] = true
  if (event.waitSeconds > 0) attributes['breakwater.load_shedding.queue_time'] = event.waitSeconds
  annotate(ctx, span, 'breakwater.load_shedding.decision', attributes)
  if (waited) {
    waitSpan(ctx, span, 'breakwater.load_shedding.queue', event.waitSeconds, {
      'breakwater.load_shedding.policy': event.policy,
      'breakwater.load_shedding.outcome': event.outcome,
    })
  }
}

function sheddingAttributes(
  event: LoadSheddingDecisionEvent,
  reason: string,
  dryRun: boolean,
  route: string,
): Attributes {
  const attributes = outcomeAttributes(event.policy, event.outcome, dryRun, route)
  attributes['breakwater.priority'] = event.priority
  if (reason !== '') attributes['breakwater.reason'] = reason
  return attributes
}

function loadSheddingLimit(message: unknown, ctx: HandlerContext): void {
  const event = message as LoadSheddingLimitEvent
  setGauge(ctx.instruments.gauges.loadSheddingLimit, event.policy, event.limit)
}

function loadSheddingPressure(message: unknown, ctx: HandlerContext): void {
  const event = message as LoadSheddingPressureEvent
  setGauge(ctx.instruments.gauges.loadSheddingPressure, event.policy, event.level)
}

function setGauge(table: SeriesTable, policy: string, value: number): void {
  const series = table.find(policy) ?? table.add({ 'breakwater.policy': policy }, policy)
  series.value = value
}

function circuitBreakerState(message: unknown, ctx: HandlerContext): void {
  const event = message as CircuitBreakerStateEvent
  const { instruments } = ctx
  const transitions = instruments.counts.circuitBreakerTransitions
  const series =
    transitions.find(event.policy, event.to, event.reason) ??
    transitions.add(
      {
        'breakwater.policy': event.policy,
        'breakwater.circuit_breaker.state': event.to,
        'breakwater.reason': event.reason,
      },
      event.policy,
      event.to,
      event.reason,
    )
  series.value++
  // Every state of a seen policy is a series (0 or 1), so `== 1` queries and state-history panels both work.
  const states = instruments.gauges.circuitBreakerState
  for (const state of CIRCUIT_STATES) {
    const stateSeries =
      states.find(event.policy, state) ??
      states.add({ 'breakwater.policy': event.policy, 'breakwater.circuit_breaker.state': state }, event.policy, state)
    stateSeries.value = state === event.to ? 1 : 0
  }
}

function circuitBreakerCall(message: unknown, ctx: HandlerContext): void {
  const event = message as CircuitBreakerCallEvent
  countFlagged(
    ctx.instruments.counts.circuitBreakerCalls,
    event.policy,
    event.outcome,
    'breakwater.slow',
    event.slow === true,
  )
}

function bulkheadDecision(message: unknown, ctx: HandlerContext): void {
  const event = message as BulkheadDecisionEvent
  const series = countOutcome(ctx.instruments.counts.bulkheadRequests, event.policy, event.outcome, event.reason)
  if (event.queuedSeconds > 0) {
    ctx.instruments.histograms.bulkheadQueueDuration.record(event.queuedSeconds, series.attributes)
  }
}

function bulkheadLimit(message: unknown, ctx: HandlerContext): void {
  const event = message as BulkheadLimitEvent
  const { gauges } = ctx.instruments
  setGauge(gauges.bulkheadLimit, event.policy, event.limit)
  setGauge(gauges.bulkheadActive, event.policy, event.inFlight)
  setGauge(gauges.bulkheadQueued, event.policy, event.queued)
}

function dependencyAttempt(message: unknown, ctx: HandlerContext): void {
  const event = message as DependencyAttemptEvent
  const { counts, histograms } = ctx.instruments
  const series = countFlagged(counts.dependencyAttempts, event.policy, event.outcome, 'breakwater.retry', event.retry)
  histograms.dependencyAttemptDuration.record(event.durationSeconds, series.attributes)
}

function dependencyCall(message: unknown, ctx: HandlerContext): void {
  const event = message as DependencyCallEvent
  const { counts, histograms } = ctx.instruments
  const series = countFlagged(
    counts.dependencyCalls,
    event.policy,
    event.outcome,
    'breakwater.retried',
    event.attempts > 1,
  )
  histograms.dependencyCallDuration.record(event.durationSeconds, series.attributes)
}

function retryScheduled(message: unknown, ctx: HandlerContext): void {
  const event = message as RetryScheduledEvent
  const table = ctx.instruments.counts.retryScheduled
  const flag = event.retryAfter ? '1' : ''
  const series =
    table.find(event.policy, event.reason, flag) ??
    table.add(
      {
        'breakwater.policy': event.policy,
        'breakwater.reason': event.reason,
        'breakwater.retry_after': event.retryAfter,
      },
      event.policy,
      event.reason,
      flag,
    )
  series.value++
}

function retryBudgetExhausted(message: unknown, ctx: HandlerContext): void {
  const event = message as RetryBudgetExhaustedEvent
  const table = ctx.instruments.counts.retryBudgetExhausted
  const series =
    table.find(event.policy, event.kind) ??
    table.add({ 'breakwater.policy': event.policy, 'breakwater.retry.kind': event.kind }, event.policy, event.kind)
  series.value++
}

function hedgeLaunched(message: unknown, ctx: HandlerContext): void {
  const event = message as HedgeLaunchedEvent
  const table = ctx.instruments.counts.hedgeLaunched
  const series =
    table.find(event.policy, event.trigger) ??
    table.add(
      { 'breakwater.policy': event.policy, 'breakwater.hedge.trigger': event.trigger },
      event.policy,
      event.trigger,
    )
  series.value++
}

function hedgeSettled(message: unknown, ctx: HandlerContext): void {
  const event = message as HedgeSettledEvent
  countOutcome(ctx.instruments.counts.hedgeSettled, event.policy, event.winner)
}

function fallbackServed(message: unknown, ctx: HandlerContext): void {
  const event = message as FallbackServedEvent
  countReason(ctx.instruments.counts.fallbackServed, event.policy, event.reason)
}

function staleServed(message: unknown, ctx: HandlerContext): void {
  const event = message as StaleServedEvent
  const series = countReason(ctx.instruments.counts.staleServed, event.policy, event.reason)
  ctx.instruments.histograms.staleAge.record(event.ageMs / 1000, series.attributes)
}

/** Count one event of `policy` with `reason` (no outcome: the event is the outcome). */
function countReason(table: SeriesTable, policy: string, reason: string): Series {
  const series =
    table.find(policy, reason) ??
    table.add({ 'breakwater.policy': policy, 'breakwater.reason': reason }, policy, reason)
  series.value++
  return series
}

/** Count one event of `policy` with `outcome` and one boolean attribute `name`. */
function countFlagged(table: SeriesTable, policy: string, outcome: string, name: string, value: boolean): Series {
  const flag = value ? '1' : ''
  const series =
    table.find(policy, outcome, flag) ??
    table.add({ 'breakwater.policy': policy, 'breakwater.outcome': outcome, [name]: value }, policy, outcome, flag)
  series.value++
  return series
}

/**
 * Every channel this package maps, by name. Core's `channels` today, plus the outbound policies' channels whose
 * names are fixed before they land. A test fails when core has a channel missing here.
 */
export const CHANNEL_HANDLERS: Readonly<Record<string, Handler>> = {
  'breakwater:rate-limit:decision': rateLimitDecision,
  'breakwater:rate-limit:refund': rateLimitRefund,
  'breakwater:store:error': storeError,
  'breakwater:warning': warning,
  'breakwater:timeout:decision': timeoutDecision,
  'breakwater:timeout:late-write': timeoutLateWrite,
  'breakwater:health:check': healthCheck,
  'breakwater:health:probe': healthProbe,
  'breakwater:shutdown:phase': shutdownPhase,
  'breakwater:idempotency:decision': idempotencyDecision,
  'breakwater:idempotency:settled': idempotencySettled,
  'breakwater:load-shedding:decision': loadSheddingDecision,
  'breakwater:load-shedding:limit': loadSheddingLimit,
  'breakwater:load-shedding:pressure': loadSheddingPressure,
  'breakwater:circuit-breaker:state': circuitBreakerState,
  'breakwater:circuit-breaker:call': circuitBreakerCall,
  'breakwater:bulkhead:decision': bulkheadDecision,
  'breakwater:bulkhead:limit': bulkheadLimit,
  'breakwater:dependency:attempt': dependencyAttempt,
  'breakwater:dependency:call': dependencyCall,
  'breakwater:retry:scheduled': retryScheduled,
  'breakwater:retry:budget-exhausted': retryBudgetExhausted,
  'breakwater:hedge:launched': hedgeLaunched,
  'breakwater:hedge:settled': hedgeSettled,
  'breakwater:fallback:served': fallbackServed,
  'breakwater:stale:served': staleServed,
}
