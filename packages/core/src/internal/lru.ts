// Bounding a Map by insertion order: the first key is the oldest.

/** Delete the oldest entries until `map.size <= max`. */
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
