/**
 * Options that several entry points share, defined once so they are spelled and checked the
 * same way everywhere: retry backoff, PEM material, the random source, the clock.
 */
import { systemClock, type Clock } from '../clock.js'
import { custom, duration, func, object, withMethods, type Opt, type SchemaFor } from './schema.js'

/**
 * Retry delays after failures: jittered exponential, from `initialMs` doubling up to `maxMs`.
 * The same shape wherever wayfind retries (`consul({ backoff })`, `etcd({ backoff })`,
 * `dispatcher.retry.backoff`).
 */
export interface BackoffOption {
  /** First delay ceiling, in ms. */
  readonly initialMs?: number
  /** Largest delay ceiling, in ms; at least `initialMs`. */
  readonly maxMs?: number
}

/** Parsed {@link BackoffOption}: what `Backoff` takes. */
export interface ParsedBackoff {
  readonly initialMs: number
  readonly maxMs: number
}

/**
 * The `backoff` option with its defaults (each entry point has its own: a registry reconnects
 * more patiently than a request retries). `maxMs` below `initialMs` is refused.
 */
export function backoff(
  defaults: { readonly initialMs: number; readonly maxMs: number },
  bounds: { readonly min: number; readonly max: number } = { min: 1, max: 3_600_000 },
): Opt<ParsedBackoff> {
  return object(
    {
      initialMs: duration(bounds).default(defaults.initialMs),
      maxMs: duration(bounds).default(defaults.maxMs),
    } satisfies SchemaFor<BackoffOption>,
    {
      refine: (b, at) => {
        if (b.maxMs < b.initialMs)
          at.child('maxMs').fail(
            b.maxMs,
            `Pass at least ${at.pathOf('initialMs')} (${b.initialMs}).`,
          )
      },
    },
  ).default({})
}

/** A random source in [0, 1), injectable for reproducible tests. */
export function randomSource(): Opt<() => number> {
  return func<() => number>('Pass a function returning a number in [0, 1).').default(Math.random)
}

/**
 * PEM text, as a string or Buffer; returned as a Buffer. A string without a PEM header is
 * refused: it is most likely a file path, which wayfind does not read for you.
 */
export const pem: Opt<Buffer | undefined> = custom<Buffer>('PEM', (v, at) => {
  if (typeof v === 'string' && v.includes('-----BEGIN')) return Buffer.from(v)
  if (Buffer.isBuffer(v) && v.includes('-----BEGIN')) return v
  return at.fail(
    v,
    'Pass the PEM text (string or Buffer), not a file path (read the file yourself).',
  )
})

/** A time source, injectable for tests with a fake clock; the system clock by default. */
export function clockOption(): Opt<Clock> {
  return withMethods<Clock>(
    ['now', 'setTimeout'],
    'Pass an object with now() and setTimeout(fn, ms).',
  ).default(systemClock)
}
