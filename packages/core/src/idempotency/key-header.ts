// Parsing the Idempotency-Key header: an sf-string (`"…"`, as the IETF draft specifies) or, as many clients
// send it, a bare token. Anything else — including a repeated header, which Node joins with ", " — is malformed.

/** Longest key accepted (Stripe's limit); longer keys are malformed. */
export const MAX_IDEMPOTENCY_KEY_LENGTH = 255

/** Token characters (RFC 9110 tchar, plus `:` and `/` which sf-tokens allow). No comma: a comma means repeated. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z:/]+$/

/**
 * The key carried by an `Idempotency-Key` header value, or `undefined` when the value is malformed: not an
 * sf-string or a token, empty, longer than {@link MAX_IDEMPOTENCY_KEY_LENGTH}, or several values (a repeated
 * header). Surrounding spaces are ignored.
 *
 * @example
 * parseIdempotencyKey('"8e03978e-40d5-43e8-bc93-6894a57f9324"') // '8e03978e-40d5-43e8-bc93-6894a57f9324'
 * parseIdempotencyKey('order-42') // 'order-42'
 * parseIdempotencyKey('"a", "b"') // undefined (repeated)
 */
export function parseIdempotencyKey(value: string): string | undefined {
  const text = value.trim()
  if (text.length === 0) return undefined
  if (text.charCodeAt(0) !== 34 /* " */) {
    return text.length <= MAX_IDEMPOTENCY_KEY_LENGTH && TOKEN.test(text) ? text : undefined
  }
  // sf-string (RFC 8941 §3.3.3): printable ASCII, with only \" and \\ escaped; must end at the closing quote.
  let key = ''
  for (let i = 1; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 92 /* \ */) {
      const next = text.charCodeAt(++i)
      if (next !== 34 && next !== 92) return undefined
      key += text[i]
    } else if (c === 34) {
      if (i !== text.length - 1 || key.length === 0 || key.length > MAX_IDEMPOTENCY_KEY_LENGTH) return undefined
      return key
    } else if (c < 0x20 || c > 0x7e) {
      return undefined
    } else {
      key += text[i]
    }
  }
  return undefined // no closing quote
}
