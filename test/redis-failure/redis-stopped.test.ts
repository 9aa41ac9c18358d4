// Redis goes away (process killed) and comes back empty: no check hangs, each policy answers within the store
// timeout, errors are published, and decisions return to Redis without any help.

import { describeOutage } from './outage-harness.js'

describeOutage({
  name: 'stopped',
  recovery: 'a restart',
  begin: (server) => server.stop(),
  end: (server) => server.start(),
  // With the offline queue on, ioredis holds commands for a dead server: only the store timeout ends them.
  firstErrorKind: (options) => (options.enableOfflineQueue === false ? 'error' : 'timeout'),
})
