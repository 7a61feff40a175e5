/**
 * A deterministic clock for unit tests: time moves only when `advance()` is called, and timers
 * due by then fire in order.
 */
import type { Clock, TimerHandle } from '../../src/core/clock.js'

export class FakeClock implements Clock {
  #now = 0
  #seq = 0
  readonly #timers = new Map<number, { at: number; fn: () => void }>()

  now(): number {
    return this.#now
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const id = ++this.#seq
    this.#timers.set(id, { at: this.#now + Math.max(0, ms), fn })
    return {
      clear: () => {
        this.#timers.delete(id)
      },
    }
  }

  /** Moves time forward by `ms`, firing due timers (including ones they schedule) in order. */
  advance(ms: number): void {
    const end = this.#now + ms
    for (;;) {
      let nextId: number | undefined
      let next: { at: number; fn: () => void } | undefined
      for (const [id, t] of this.#timers)
        if (t.at <= end && (next === undefined || t.at < next.at)) {
          next = t
          nextId = id
        }
      if (next === undefined || nextId === undefined) break
      this.#timers.delete(nextId)
      this.#now = next.at
      next.fn()
    }
    this.#now = end
  }

  /** Timers still pending. */
  get pending(): number {
    return this.#timers.size
  }
}

/** A seeded PRNG (mulberry32), for reproducible strategy tests. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
