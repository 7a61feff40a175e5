/**
 * A small seeded PRNG for the chaos suite, so that a failing run replays from its seed: the same
 * seed gives the same sequence of operations and faults (timing still varies, which is the
 * point of running many seeds).
 *
 * mulberry32 (Tommy Ettinger's 32-bit generator, public domain): one 32-bit state, full period
 * 2^32, good enough statistical quality for picking test operations, and trivially portable.
 * The seed is first mixed with one splitmix32 step so that nearby seeds (1, 2, 3...) start far
 * apart in the sequence.
 */

/** A deterministic random source with the helpers the chaos driver needs. */
export interface Rng {
  /** The seed this generator was created with (for the replay command). */
  readonly seed: number
  /** A float in [0, 1). */
  next(): number
  /** An integer in [0, n). */
  int(n: number): number
  /** An integer in [lo, hi] (both inclusive). */
  between(lo: number, hi: number): number
  /** True with probability `p`. */
  chance(p: number): boolean
  /** One element of a non-empty list. */
  pick<T>(items: readonly T[]): T
  /** A shuffled copy (Fisher–Yates). */
  shuffle<T>(items: readonly T[]): T[]
}

/** splitmix32's finaliser: spreads the bits of `x` over the whole word. */
function mix32(x: number): number {
  let z = (x + 0x9e3779b9) | 0
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b)
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35)
  return (z ^ (z >>> 16)) >>> 0
}

/** A mulberry32 generator seeded with `seed` (any integer; only its low 32 bits count). */
export function mulberry32(seed: number): Rng {
  if (!Number.isSafeInteger(seed)) throw new RangeError(`seed must be an integer, got ${seed}`)
  let state = mix32(seed >>> 0)
  const next = (): number => {
    state = (state + 0x6d2b79f5) | 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const int = (n: number): number => Math.floor(next() * n)
  return {
    seed,
    next,
    int,
    between: (lo, hi) => lo + int(hi - lo + 1),
    chance: (p) => next() < p,
    pick<T>(items: readonly T[]): T {
      if (items.length === 0) throw new RangeError('pick() from an empty list')
      return items[int(items.length)] as T
    },
    shuffle<T>(items: readonly T[]): T[] {
      const out = [...items]
      for (let i = out.length - 1; i > 0; i--) {
        const j = int(i + 1)
        ;[out[i], out[j]] = [out[j] as T, out[i] as T]
      }
      return out
    },
  }
}
