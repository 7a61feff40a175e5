/**
 * Consul durations. Consul parses them with Go's `time.ParseDuration`: a bare number is either
 * rejected ("missing unit", query `wait`) or read as nanoseconds (JSON check fields), so wayfind
 * always sends a string with a unit (docs/design/consul.md#durations).
 */

/**
 * Formats whole milliseconds as the shortest exact Go duration: `300000` → `"5m"`,
 * `10000` → `"10s"`, `1500` → `"1500ms"`. Fractions of a millisecond are rounded up so that a
 * positive duration never becomes `"0ms"`.
 */
export function consulDuration(ms: number): string {
  const whole = Math.max(0, Math.ceil(ms))
  if (whole === 0) return '0s'
  if (whole % 3_600_000 === 0) return `${whole / 3_600_000}h`
  if (whole % 60_000 === 0) return `${whole / 60_000}m`
  if (whole % 1_000 === 0) return `${whole / 1_000}s`
  return `${whole}ms`
}
