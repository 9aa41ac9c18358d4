// Bounding a Map by insertion order: the first key is the oldest.

/**
 * Delete the oldest entries while `map.size > max` or `overBudget()` says the map is still too big; each deleted
 * entry is handed to `onEvict` (to keep a size total in step). Returns how many were deleted.
 */
export function evictOverflow<K, V>(
  map: Map<K, V>,
  max: number,
  onEvict?: (value: V) => void,
  overBudget?: () => boolean,
): number {
  let evicted = 0
  while (map.size > max || (overBudget?.() === true && map.size > 0)) {
    const oldest = map.entries().next()
    if (oldest.done) break
    map.delete(oldest.value[0])
    onEvict?.(oldest.value[1])
    evicted++
  }
  return evicted
}
