// The neutral view of a request that every policy reads. Adapters build it lazily; nothing is copied.

/**
 * What a policy may read of a request. Built by each framework adapter without copying headers or body.
 */
export interface RequestView {
  /** Upper-case HTTP method. */
  readonly method: string
  /** The route pattern when the framework knows it (`/orders/:id`), else the URL path. */
  readonly path: string
  /** A request header by lower-case name; repeated headers are joined with `, `. */
  header(name: string): string | undefined
  /** The client IP as the framework resolved it (its trust-proxy rules apply), if known. */
  readonly ip: string | undefined
  /** Aborted on deadline, client disconnect or shutdown. */
  readonly signal: AbortSignal
}

/** Headers a decision asks the adapter to add, as `[name, value]` pairs; repeated names are appended. */
export type HeaderList = ReadonlyArray<readonly [name: string, value: string]>
