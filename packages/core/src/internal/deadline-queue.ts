// One timer for many deadlines: entries sit in a binary min-heap by deadline and a single unref'd timer is armed
// for the earliest. Adding or removing an entry is O(log n) and allocates nothing. The timer is never cleared
// when an entry leaves: it fires once at the deadline it was armed for, expires what is due and re-arms only for
// what is left — so a busy queue pays no setTimeout/clearTimeout per entry, and an emptied one holds nothing
// after that one firing (the entries themselves leave the heap when they settle).

import { type Clock, monotonicNow } from './clock.js'

/** Something with a deadline. `heapIndex` is the queue's bookkeeping: -1 while the entry is not queued. */
export interface DeadlineEntry {
  /** When it expires, on the queue's clock (ms). */
  deadlineAt: number
  heapIndex: number
}

/** A min-heap of deadlines with one timer; `onExpire` runs for each entry whose deadline has passed. */
export class DeadlineQueue<E extends DeadlineEntry> {
  readonly #heap: E[] = []
  readonly #onExpire: (entry: E) => void
  readonly #now: Clock
  #timer: ReturnType<typeof setTimeout> | undefined = undefined
  #timerAt = Number.POSITIVE_INFINITY
  readonly #fire = (): void => this.#expire()

  constructor(onExpire: (entry: E) => void, clock: Clock = monotonicNow) {
    this.#onExpire = onExpire
    this.#now = clock
  }

  /** Entries waiting. */
  get size(): number {
    return this.#heap.length
  }

  /** Queue `entry` to expire at `deadlineAt`. An entry already queued must be removed first. */
  add(entry: E, deadlineAt: number): void {
    entry.deadlineAt = deadlineAt
    const heap = this.#heap
    entry.heapIndex = heap.length
    heap.push(entry)
    this.#up(entry.heapIndex)
    if (deadlineAt < this.#timerAt) this.#arm(deadlineAt)
  }

  /** Take `entry` out (it settled before its deadline). Does nothing for an entry that is not queued. */
  remove(entry: E): void {
    const index = entry.heapIndex
    if (index < 0) return
    entry.heapIndex = -1
    const heap = this.#heap
    const last = heap.pop() as E
    if (index < heap.length) {
      heap[index] = last
      last.heapIndex = index
      this.#down(index)
      this.#up(last.heapIndex)
    }
  }

  #arm(at: number): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timerAt = at
    const timer = setTimeout(this.#fire, Math.max(1, Math.ceil(at - this.#now())))
    timer.unref()
    this.#timer = timer
  }

  #expire(): void {
    this.#timer = undefined
    this.#timerAt = Number.POSITIVE_INFINITY
    const heap = this.#heap
    // libuv may fire a timer up to ~1 ms early (loop time is cached in whole ms): an entry is never expired
    // before its deadline; the timer is re-armed for it instead.
    const now = this.#now()
    while (heap.length > 0) {
      const first = heap[0] as E
      if (first.deadlineAt > now) {
        this.#arm(first.deadlineAt)
        return
      }
      this.remove(first)
      this.#onExpire(first)
    }
  }

  #up(index: number): void {
    const heap = this.#heap
    const entry = heap[index] as E
    while (index > 0) {
      const parentIndex = (index - 1) >> 1
      const parent = heap[parentIndex] as E
      if (parent.deadlineAt <= entry.deadlineAt) break
      heap[index] = parent
      parent.heapIndex = index
      index = parentIndex
    }
    heap[index] = entry
    entry.heapIndex = index
  }

  #down(index: number): void {
    const heap = this.#heap
    const length = heap.length
    const entry = heap[index] as E
    for (;;) {
      const left = 2 * index + 1
      if (left >= length) break
      const right = left + 1
      const child = right < length && (heap[right] as E).deadlineAt < (heap[left] as E).deadlineAt ? right : left
      const childEntry = heap[child] as E
      if (childEntry.deadlineAt >= entry.deadlineAt) break
      heap[index] = childEntry
      childEntry.heapIndex = index
      index = child
    }
    heap[index] = entry
    entry.heapIndex = index
  }
}
