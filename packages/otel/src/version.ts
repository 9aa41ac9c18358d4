// The instrumentation scope: this package's name and version (a test keeps the version equal to package.json's).

export const SCOPE_NAME = '@breakwater/otel'
export const SCOPE_VERSION = '0.1.0'
