/**
 * Exit codes, usage errors and small argument parsers shared by the commands.
 */

/** Exit codes of `wayfind` (documented in docs/cli.md). */
export const EXIT = {
  OK: 0,
  /** The registry failed, or something else went wrong at run time. */
  FAILURE: 1,
  /** Bad command line: unknown flag, missing argument, invalid value. */
  USAGE: 2,
  /** `resolve` found no instance within `--timeout`. */
  RESOLVE_TIMEOUT: 3,
  /** Stopped by SIGINT (128 + 2), after cleaning up. */
  SIGINT: 130,
  /** Stopped by SIGTERM (128 + 15), after cleaning up. */
  SIGTERM: 143,
} as const

/** A command-line mistake: printed with the command's usage, exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError'
}

/**
 * A duration flag: `500ms`, `2s`, `1m`, `1.5s`. A bare number is refused: `--timeout 5` meant
 * five seconds to every user who typed it, and five milliseconds to the parser.
 */
export function parseDurationMs(flag: string, text: string): number {
  const trimmed = text.trim()
  if (/^\d+(?:\.\d+)?$/.test(trimmed))
    throw new UsageError(
      `--${flag}: ${JSON.stringify(text)} has no unit; write ${trimmed}s for seconds or ${trimmed}ms for milliseconds`,
    )
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)$/.exec(trimmed)
  if (m === null)
    throw new UsageError(
      `--${flag}: expected a duration such as 500ms, 5s or 1m, got ${JSON.stringify(text)}`,
    )
  const n = Number(m[1])
  const unit = m[2]
  const v = unit === 'ms' ? n : unit === 's' ? n * 1_000 : n * 60_000
  if (!(v >= 1) || v > 2 ** 31 - 1)
    throw new UsageError(`--${flag}: ${JSON.stringify(text)} is out of range`)
  return Math.round(v)
}

/**
 * `node:util` parseArgs errors (unknown flag, missing or unexpected value) in the CLI's own
 * words; anything else is returned unchanged.
 */
export function usageErrorFrom(err: unknown): unknown {
  const code = (err as { code?: unknown } | null)?.code
  if (typeof code !== 'string' || !code.startsWith('ERR_PARSE_ARGS')) return err
  const message = err instanceof Error ? err.message : String(err)
  const option = /'(-{1,2}[^' ]+)/.exec(message)?.[1] ?? 'an option'
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') return new UsageError(`unknown option ${option}`)
  if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL')
    return new UsageError(`unexpected argument ${/'([^']*)'/.exec(message)?.[1] ?? ''}`.trim())
  if (/argument missing/.test(message)) return new UsageError(`${option} needs a value`)
  if (/does not take an argument/.test(message)) return new UsageError(`${option} takes no value`)
  return new UsageError(`invalid use of ${option}`)
}

/** A whole-number flag within bounds. */
export function parseCount(flag: string, text: string, min: number, max: number): number {
  const n = Number(text)
  if (!/^\d+$/.test(text.trim()) || !Number.isInteger(n) || n < min || n > max)
    throw new UsageError(
      `--${flag}: expected a whole number between ${min} and ${max}, got ${JSON.stringify(text)}`,
    )
  return n
}

/** Exactly one positional `<service>`. */
export function oneService(positionals: readonly string[], command: string): string {
  if (positionals.length === 0) throw new UsageError(`${command}: missing <service>`)
  if (positionals.length > 1)
    throw new UsageError(`${command}: unexpected argument ${JSON.stringify(positionals[1])}`)
  const s = positionals[0] ?? ''
  if (s.trim() === '') throw new UsageError(`${command}: <service> is empty`)
  return s
}

/**
 * Idle TTL for clients that look at a service the whole time they run: a day, not 2^31 − 1,
 * because the cache adds to it before arming a timer, and an overflowing Node timer fires at once.
 */
export const IDLE_TTL_MS = 86_400_000
