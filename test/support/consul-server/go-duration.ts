/**
 * Go's `time.ParseDuration`, ported so that the test server accepts and rejects exactly the
 * strings Consul does (`?wait=`, check `Interval`/`Timeout`/`TTL`/`DeregisterCriticalServiceAfter`).
 * Source: golang/go src/time/format.go `ParseDuration`. Error texts match Go ≥ 1.15 (quoted input).
 */

const UNIT_NS: Readonly<Record<string, number>> = {
  ns: 1,
  us: 1e3,
  µs: 1e3, // U+00B5 micro sign
  μs: 1e3, // U+03BC Greek mu
  ms: 1e6,
  s: 1e9,
  m: 60e9,
  h: 3600e9,
}

/** A Go duration parse failure; `message` is Go's error text. */
export class GoDurationError extends Error {
  override name = 'GoDurationError'
}

/** Parses a Go duration string and returns nanoseconds (may be fractional for sub-ns inputs). */
export function parseGoDuration(input: string): number {
  const quoted = JSON.stringify(input)
  let s = input
  let negative = false
  if (s.startsWith('-') || s.startsWith('+')) {
    negative = s.startsWith('-')
    s = s.slice(1)
  }
  // Go special-cases a bare "0" (no unit needed).
  if (s === '0') return 0
  if (s === '') throw new GoDurationError(`time: invalid duration ${quoted}`)
  let total = 0
  while (s !== '') {
    const num = /^([0-9]*)(?:\.([0-9]*))?/.exec(s)
    const intPart = num?.[1] ?? ''
    const fracPart = num?.[2]
    if (intPart === '' && (fracPart === undefined || fracPart === '')) {
      throw new GoDurationError(`time: invalid duration ${quoted}`)
    }
    s = s.slice(num?.[0].length ?? 0)
    const unitMatch = /^[^0-9.]*/.exec(s)
    const unit = unitMatch?.[0] ?? ''
    if (unit === '') throw new GoDurationError(`time: missing unit in duration ${quoted}`)
    const mult = UNIT_NS[unit]
    if (mult === undefined) {
      throw new GoDurationError(`time: unknown unit ${JSON.stringify(unit)} in duration ${quoted}`)
    }
    total += (Number(intPart === '' ? '0' : intPart) + Number(`0.${fracPart ?? '0'}`)) * mult
    s = s.slice(unit.length)
  }
  return negative ? -total : total
}

/** Formats milliseconds the way Go's `Duration.String()` does for the common cases ("10s", "1m0s", "500ms"). */
export function formatGoDuration(ms: number): string {
  if (ms === 0) return '0s'
  if (ms < 1000) return `${trim(ms)}ms`
  const totalS = ms / 1000
  const h = Math.floor(totalS / 3600)
  const m = Math.floor((totalS - h * 3600) / 60)
  const sec = totalS - h * 3600 - m * 60
  if (h > 0) return `${h}h${m}m${trim(sec)}s`
  if (m > 0) return `${m}m${trim(sec)}s`
  return `${trim(sec)}s`
}

function trim(n: number): string {
  return String(Number(n.toFixed(9)))
}
