// OTEL=prometheus: the real OpenTelemetry metrics SDK with the Prometheus exporter, fed by @breakwater/otel, and
// the text the app serves at GET /metrics. Loaded only when asked: without OTEL the app carries no SDK.

/** Content type of the Prometheus text exposition format. */
export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'

/**
 * With `OTEL=prometheus`, start the metrics SDK and subscribe @breakwater/otel to every Breakwater channel; resolve
 * to a function that renders the current metrics as Prometheus text. Without OTEL, resolve to undefined.
 * @param {string | undefined} otel the OTEL environment variable
 * @returns {Promise<(() => Promise<string>) | undefined>}
 */
export async function startMetrics(otel = process.env.OTEL) {
  if (otel === undefined || otel === '') return undefined
  if (otel !== 'prometheus') throw new Error(`OTEL is "prometheus" or unset, got ${JSON.stringify(otel)}`)
  const [{ instrument }, { MeterProvider }, { PrometheusExporter, PrometheusSerializer }] = await Promise.all([
    import('@breakwater/otel'),
    import('@opentelemetry/sdk-metrics'),
    import('@opentelemetry/exporter-prometheus'),
  ])
  // The app serves the exposition itself (GET /metrics), so the exporter starts no server of its own.
  const exporter = new PrometheusExporter({ preventServerStart: true })
  instrument({ meterProvider: new MeterProvider({ readers: [exporter] }) })
  const serializer = new PrometheusSerializer()
  return async () => serializer.serialize((await exporter.collect()).resourceMetrics)
}
