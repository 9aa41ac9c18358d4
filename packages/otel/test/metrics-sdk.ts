// A real OpenTelemetry metrics SDK for tests: a MeterProvider whose reader collects on demand, and lookups of
// the collected data points by metric name and attributes.

import type { Attributes } from '@opentelemetry/api'
import {
  AggregationTemporality,
  type DataPoint,
  type Histogram,
  InMemoryMetricExporter,
  MeterProvider,
  type MetricData,
  PeriodicExportingMetricReader,
} from '@opentelemetry/sdk-metrics'

export interface TestMeter {
  readonly meterProvider: MeterProvider
  /** Collect now and return every metric of every scope. */
  collect(): Promise<MetricData[]>
  /** Collect now and return the instrumentation scopes (name@version) and their metric names. */
  scopes(): Promise<Array<{ scope: string; metrics: string[] }>>
  shutdown(): Promise<void>
}

export function testMeter(): TestMeter {
  const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE)
  // A long interval: tests collect with forceFlush, never on a timer.
  const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 })
  const meterProvider = new MeterProvider({ readers: [reader] })
  return {
    meterProvider,
    async collect() {
      exporter.reset()
      await reader.forceFlush()
      return exporter.getMetrics().flatMap((resource) => resource.scopeMetrics.flatMap((scope) => scope.metrics))
    },
    async scopes() {
      exporter.reset()
      await reader.forceFlush()
      return exporter.getMetrics().flatMap((resource) =>
        resource.scopeMetrics.map((scope) => ({
          scope: `${scope.scope.name}@${scope.scope.version}`,
          metrics: scope.metrics.map((metric) => metric.descriptor.name),
        })),
      )
    },
    shutdown: () => meterProvider.shutdown(),
  }
}

const matches = (point: DataPoint<unknown>, attributes: Attributes): boolean =>
  Object.entries(attributes).every(([key, value]) => point.attributes[key] === value)

/** The data points of `name` whose attributes include `attributes`. */
export function pointsOf(metrics: MetricData[], name: string, attributes: Attributes = {}): DataPoint<unknown>[] {
  const metric = metrics.find((m) => m.descriptor.name === name)
  return (metric?.dataPoints ?? []).filter((point) =>
    matches(point as DataPoint<unknown>, attributes),
  ) as DataPoint<unknown>[]
}

/** The sum of a counter or gauge's points matching `attributes` (0 when there are none). */
export function sumOf(metrics: MetricData[], name: string, attributes: Attributes = {}): number {
  return pointsOf(metrics, name, attributes).reduce((sum, point) => sum + (point.value as number), 0)
}

/** How many values a histogram recorded under `attributes`. */
export function histogramCount(metrics: MetricData[], name: string, attributes: Attributes = {}): number {
  return pointsOf(metrics, name, attributes).reduce((sum, point) => sum + (point.value as Histogram).count, 0)
}
