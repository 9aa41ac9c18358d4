// Public entry of @breakwater/undici: an undici interceptor that guards the calls to chosen origins with Breakwater.

export type { CallContext, Controller, Handler } from './call.js'
export { type BreakwaterInterceptor, type BreakwaterOptions, breakwater } from './interceptor.js'
