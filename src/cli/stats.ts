/**
 * Percentiles for `wayfind bench latency` (nearest rank: every reported value was measured).
 */

export interface LatencySummary {
  readonly count: number
  readonly p50: number
  readonly p90: number
  readonly p99: number
  readonly max: number
}

export function summarize(samples: readonly number[]): LatencySummary {
  const s = [...samples].sort((a, b) => a - b)
  const at = (p: number): number =>
    s.length === 0
      ? Number.NaN
      : (s[Math.min(s.length, Math.max(1, Math.ceil((p / 100) * s.length))) - 1] ?? Number.NaN)
  const round = (v: number): number => Math.round(v * 1000) / 1000
  return {
    count: s.length,
    p50: round(at(50)),
    p90: round(at(90)),
    p99: round(at(99)),
    max: round(s[s.length - 1] ?? Number.NaN),
  }
}
