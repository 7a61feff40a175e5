/**
 * Summary statistics for benchmark samples. Percentiles use the nearest-rank method on a sorted
 * copy, so p99 of 100 samples is the 99th value, never an interpolation that no run produced.
 */

/** p50/p90/p99/max of one series, in the samples' unit. */
export interface Summary {
  readonly count: number
  readonly min: number
  readonly p50: number
  readonly p90: number
  readonly p99: number
  readonly max: number
  readonly mean: number
}

/** Nearest-rank percentile of already-sorted values; NaN for an empty list. */
export function percentileSorted(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)))
  return sorted[rank - 1] ?? Number.NaN
}

export function summarize(samples: readonly number[]): Summary {
  const sorted = [...samples].sort((a, b) => a - b)
  let sum = 0
  for (const v of sorted) sum += v
  return {
    count: sorted.length,
    min: sorted[0] ?? Number.NaN,
    p50: percentileSorted(sorted, 50),
    p90: percentileSorted(sorted, 90),
    p99: percentileSorted(sorted, 99),
    max: sorted[sorted.length - 1] ?? Number.NaN,
    mean: sorted.length === 0 ? Number.NaN : sum / sorted.length,
  }
}

export function median(values: readonly number[]): number {
  return percentileSorted(
    [...values].sort((a, b) => a - b),
    50,
  )
}

/** `a / b`, rounded for display; NaN-safe. */
export function ratio(a: number, b: number): number {
  if (!Number.isFinite(a) || !Number.isFinite(b) || b === 0) return Number.NaN
  return Math.round((a / b) * 100) / 100
}

/** Wall-clock milliseconds with sub-ms precision, comparable across processes on one host. */
export function wallMs(): number {
  return performance.timeOrigin + performance.now()
}

/** Fisher-Yates shuffle of a copy (a fresh random order of interleaved variants per round). */
export function shuffled<T>(items: readonly T[]): T[] {
  const out = [...items]
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1))
    const a = out[i] as T
    out[i] = out[j] as T
    out[j] = a
  }
  return out
}
