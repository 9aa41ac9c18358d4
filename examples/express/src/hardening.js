// What a production app must add around Breakwater, shown once: an `error` listener on the Redis client, and the
// error that answers an unknown method on a route with 405 problem+json and `Allow` (through errorHandler()).

/**
 * An ioredis client needs an `error` listener: without one, every failed reconnect during an outage prints
 * "Unhandled error event" with a stack. This logs one line when Redis goes away and one when it is back.
 * @param {import('ioredis').Redis} client
 */
export function logRedisErrors(client) {
  let down = false
  client.on('error', (/** @type {Error} */ error) => {
    if (!down) console.error(`redis unavailable: ${error.message}`)
    down = true
  })
  client.on('ready', () => {
    if (down) console.error('redis available again')
    down = false
  })
}

/**
 * The error for a method a route does not serve: errorHandler() answers it 405 problem+json
 * (`BW_METHOD_NOT_ALLOWED`) with this `Allow`.
 * @param {string} allow
 */
export function methodNotAllowed(allow) {
  return Object.assign(new Error('Method Not Allowed'), { status: 405, headers: { Allow: allow } })
}
