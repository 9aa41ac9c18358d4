// Where a rule's state lives in Redis: `<prefix>{<client key>}:<rule>`. The hash tag keeps every rule of one
// client key in one Cluster slot, so a multi-rule decision is one script call on one node.

const SPECIAL = /[{}%]/
const SPECIAL_ALL = /[{}%]/g
const ESCAPES: Record<string, string> = { '{': '%7B', '}': '%7D', '%': '%25' }
const escapeChar = (c: string): string => ESCAPES[c] as string

/**
 * The hash-tagged part of every rule key of `key`: `<prefix>{<key>`. Braces in the key are percent-encoded
 * (and so is `%`, to keep the encoding one-to-one): a `}` at the start of a key would otherwise make an empty
 * hash tag, Redis would hash the whole key, and the rules of one client would land in different slots.
 */
export function taggedKey(prefix: string, key: string): string {
  return `${prefix}{${SPECIAL.test(key) ? key.replace(SPECIAL_ALL, escapeChar) : key}`
}

/** The suffix closing the hash tag and naming the rule: `}:<rule>`. */
export function ruleSuffix(ruleName: string): string {
  return `}:${ruleName}`
}
