/**
 * Options of `wf.resolve()`: the public interface and its schema.
 */
import { parseOptions } from './options/check.js'
import {
  abortSignal,
  duration,
  object,
  string,
  type OutputOf,
  type SchemaFor,
} from './options/schema.js'

/** Options of `wf.resolve()`. */
export interface ResolveOptions {
  /**
   * Give up after this long with `ResolveTimeoutError`. `Infinity` waits until the first
   * instance (or `signal`, or `close()`); any finite length works, however large.
   * @defaultValue the client's `resolveTimeoutMs`
   */
  readonly timeoutMs?: number
  /** Aborting rejects with `signal.reason`. */
  readonly signal?: AbortSignal
}

/** The schema of {@link ResolveOptions}. */
export const resolveSchema = {
  // No default here: absent means the client's resolveTimeoutMs.
  timeoutMs: duration({ min: 0, max: Number.POSITIVE_INFINITY, infinity: true }),
  signal: abortSignal(),
} satisfies SchemaFor<ResolveOptions>

const resolveOptions = object(resolveSchema, {
  fix: 'Pass an options object, e.g. { timeoutMs: 5_000 }.',
}).default({})

/** {@link ResolveOptions} checked. */
export type ParsedResolveOptions = OutputOf<typeof resolveOptions>

/** Checks {@link ResolveOptions}; throws `InvalidOptionError` naming the option. */
export function parseResolveOptions(input: ResolveOptions | undefined): ParsedResolveOptions {
  return parseOptions(resolveOptions, input, { label: 'resolve()' })
}

const serviceName = string({ fix: 'Pass the service name, e.g. "payments".' }).required(
  'Pass the service name, e.g. "payments".',
)

/** Checks the service name given to `resolve()` / `instances()`; errors name `service`. */
export function parseServiceName(service: string, label: string): string {
  return parseOptions(serviceName, service, { label, path: 'service' })
}
