/** Test helpers for strategies: a seeded RNG, a fake clock and a StrategyContext builder. */
import type { Clock, TimerHandle } from '../../../src/core/clock.js'
import { DefaultLoadTracker } from '../../../src/balancer/load-tracker.js'
import type { Picker, StrategyContext } from '../../../src/balancer/strategy.js'
import { createInstance, type Instance } from '../../../src/instance.js'
import { seededRandom } from '../../support/fake-clock.js'

/** mulberry32: a small deterministic PRNG in [0, 1). */
export const seeded = seededRandom

/** A manual clock: time moves only through `advance`, which fires due timers in order. */
export class FakeClock implements Clock {
  #now = 1_000
  #timers: { at: number; fn: () => void; live: boolean }[] = []
  now(): number {
    return this.#now
  }
  setTimeout(fn: () => void, ms: number): TimerHandle {
    const t = { at: this.#now + ms, fn, live: true }
    this.#timers.push(t)
    return {
      clear: () => {
        t.live = false
      },
    }
  }
  /** Pending (uncleared, unfired) timers. */
  get pending(): number {
    return this.#timers.filter((t) => t.live).length
  }
  advance(ms: number): void {
    const target = this.#now + ms
    for (;;) {
      const due = this.#timers
        .filter((t) => t.live && t.at <= target)
        .sort((a, b) => a.at - b.at)[0]
      if (due === undefined) break
      this.#now = Math.max(this.#now, due.at)
      due.live = false
      due.fn()
    }
    this.#now = target
    this.#timers = this.#timers.filter((t) => t.live)
  }
}

export function instances(n: number, weights?: readonly number[]): Instance[] {
  return Array.from({ length: n }, (_, i) =>
    createInstance({
      id: `i${i}`,
      service: 'svc',
      host: '127.0.0.1',
      port: 10_000 + i,
      weight: weights?.[i] ?? 1,
    }),
  )
}

export function context(
  overrides: Partial<StrategyContext> & { seed?: number } = {},
): StrategyContext & { load: DefaultLoadTracker; clock: FakeClock } {
  const clock = (overrides.clock as FakeClock | undefined) ?? new FakeClock()
  return {
    service: 'svc',
    load: (overrides.load as DefaultLoadTracker | undefined) ?? new DefaultLoadTracker({ clock }),
    random: overrides.random ?? seeded(overrides.seed ?? 42),
    clock,
    previous: overrides.previous,
  }
}

/** Picks `n` times and counts by instance id. */
export function countPicks(
  picker: Picker,
  n: number,
  exclude?: ReadonlySet<string>,
): Map<string, number> {
  const counts = new Map<string, number>()
  for (let i = 0; i < n; i++) {
    const r = picker.pick(exclude === undefined ? undefined : { exclude })
    if (r.kind !== 'pick') throw new Error(`pick failed: ${r.kind}`)
    counts.set(r.instance.id, (counts.get(r.instance.id) ?? 0) + 1)
  }
  return counts
}
