// A Map used as an LRU: insertion order is recency order, the first key is the least recently used.

/** Move `key` to the most-recent end. */
export function touch<K, V>(map: Map<K, V>, key: K, value: V): void {
  map.delete(key)
  map.set(key, value)
}

/** Evict least-recently-used entries until `map.size <= max`. */
export function evictOverflow<K, V>(map: Map<K, V>, max: number): number {
  let evicted = 0
  while (map.size > max) {
    const oldest = map.keys().next()
    if (oldest.done) break
    map.delete(oldest.value)
    evicted++
  }
  return evicted
}
