// problem+json bodies (RFC 9457) for every rejection Breakwater produces.

/** The problem types registered by the IETF RateLimit draft (-09 and later). */
export const ProblemType = {
  QuotaExceeded: 'https://iana.org/assignments/http-problem-types#quota-exceeded',
  TemporaryReducedCapacity: 'https://iana.org/assignments/http-problem-types#temporary-reduced-capacity',
} as const

/** A problem details object as sent in an `application/problem+json` body. */
export interface ProblemDetails {
  type: string
  title: string
  status: number
  detail?: string
  /** Breakwater's stable error code, e.g. `BW_RATE_LIMITED`. */
  code: string
  [extension: string]: unknown
}

export const PROBLEM_CONTENT_TYPE = 'application/problem+json'
