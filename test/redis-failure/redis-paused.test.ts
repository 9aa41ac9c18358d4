// Redis hangs (SIGSTOP: connections stay open, nothing answers) and later resumes: no check hangs, each policy
// answers within the store timeout, errors are published, and decisions return to Redis without any help.

import { describeOutage } from './outage-harness.js'

describeOutage({
  name: 'paused (SIGSTOP)',
  recovery: 'SIGCONT',
  begin: (server) => server.pause(),
  end: (server) => server.resume(),
  // A hung server accepts every command and answers none: always a timeout, whatever the client settings.
  firstErrorKind: () => 'timeout',
})
