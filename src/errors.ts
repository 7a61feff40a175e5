/**
 * Errors raised or emitted by wayfind.
 *
 * Every error is a {@link WayfindError} with a stable `code` (match on it, as with undici's
 * `UND_ERR_*`), a `retryable` flag and the original `cause`. Classes are branded with
 * `Symbol.for('wayfind.error')`, so `instanceof` and {@link isWayfindError} work even when two
 * copies of the package are loaded.
 *
 * Hot paths (picking) return errors as values; API edges throw or reject with these classes.
 * Third-party errors (etcd3, undici, consul) never escape unwrapped: they travel as `cause`.
 */
import { renderValue } from './core/options/redact.js'

/** Stable error codes. Documented in `docs/errors.md`. */
export const ErrorCode = {
  INVALID_OPTION: 'WAYFIND_ERR_INVALID_OPTION',
  RESOLVE_TIMEOUT: 'WAYFIND_ERR_RESOLVE_TIMEOUT',
  NO_INSTANCES: 'WAYFIND_ERR_NO_INSTANCES',
  REGISTRY_UNAVAILABLE: 'WAYFIND_ERR_REGISTRY_UNAVAILABLE',
  MALFORMED_INSTANCE: 'WAYFIND_ERR_MALFORMED_INSTANCE',
  REGISTRATION_FAILED: 'WAYFIND_ERR_REGISTRATION_FAILED',
  REGISTRATION_CONFLICT: 'WAYFIND_ERR_REGISTRATION_CONFLICT',
  LEASE_LOST: 'WAYFIND_ERR_LEASE_LOST',
  CLOSED: 'WAYFIND_ERR_CLOSED',
  LISTENER: 'WAYFIND_ERR_LISTENER',
  INVALID_RESPONSE: 'WAYFIND_ERR_INVALID_RESPONSE',
  LIMIT_EXCEEDED: 'WAYFIND_ERR_LIMIT_EXCEEDED',
} as const

/** Union of every {@link ErrorCode} value. */
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode]

const BRAND = Symbol.for('wayfind.error')

/** Options common to every wayfind error. */
export interface WayfindErrorOptions {
  /** The underlying error (etcd3, undici, consul, a system error...). */
  readonly cause?: unknown
  /** Overrides the class default for {@link WayfindError.retryable}. */
  readonly retryable?: boolean
}

/** Base class of every error wayfind raises or emits. */
export class WayfindError extends Error {
  /** Stable machine-readable code, `WAYFIND_ERR_*`. */
  readonly code: ErrorCode
  /** True when the same operation may succeed if tried again later (the registry may come back). */
  readonly retryable: boolean

  constructor(code: ErrorCode, message: string, options: WayfindErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = new.target.name
    this.code = code
    this.retryable = options.retryable ?? false
    Object.defineProperty(this, BRAND, { value: true })
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    // `this` is WayfindError itself (its parent is Error), not a subclass. Written without the
    // class's own name: a bundler gives a class whose body names itself an inner name
    // (esbuild: `class _WayfindError`), and `error.name` is taken from the class.
    if (Object.getPrototypeOf(this) === Error) return isWayfindError(value)
    return Function.prototype[Symbol.hasInstance].call(this, value)
  }
}

/** True for any wayfind error, from any copy of the package. */
export function isWayfindError(value: unknown): value is WayfindError {
  return (
    typeof value === 'object' &&
    value !== null &&
    (value as Record<symbol, unknown>)[BRAND] === true
  )
}

/**
 * An option is invalid. Thrown synchronously at construction (or before any request for
 * per-call options). The message names the option, the value received and the fix.
 */
export class InvalidOptionError extends WayfindError {
  /** Dotted path of the offending option, e.g. `check.intervalMs`. */
  readonly option: string
  /**
   * @param options.secret - the option is secret: the message shows the value's shape only
   *   (`<redacted string, 12 chars>`), never its text.
   */
  constructor(
    option: string,
    received: unknown,
    fix: string,
    options: { readonly secret?: boolean } = {},
  ) {
    super(
      ErrorCode.INVALID_OPTION,
      `Invalid option "${option}": got ${renderValue(received, options.secret)}. ${fix}`,
    )
    this.option = option
  }
}

/** `resolve()` found no instance before its `timeoutMs` elapsed. */
export class ResolveTimeoutError extends WayfindError {
  readonly service: string
  readonly timeoutMs: number
  constructor(service: string, timeoutMs: number, options: WayfindErrorOptions = {}) {
    super(
      ErrorCode.RESOLVE_TIMEOUT,
      `No instance of "${service}" became available within ${timeoutMs} ms`,
      { retryable: true, ...options },
    )
    this.service = service
    this.timeoutMs = timeoutMs
  }
}

/** A service has no usable instance right now (a pick could not be made). */
export class NoInstancesError extends WayfindError {
  readonly service: string
  constructor(
    service: string,
    detail = 'the registry lists no usable instance',
    options: WayfindErrorOptions = {},
  ) {
    super(ErrorCode.NO_INSTANCES, `No instance of "${service}": ${detail}`, {
      retryable: true,
      ...options,
    })
    this.service = service
  }
}

/** The registry could not be reached or answered with an error. Retried with backoff. */
export class RegistryUnavailableError extends WayfindError {
  constructor(message: string, options: WayfindErrorOptions = {}) {
    super(ErrorCode.REGISTRY_UNAVAILABLE, message, { retryable: true, ...options })
  }
}

/**
 * A registry entry could not be read as an instance. Emitted (never thrown): the entry is skipped
 * and the other instances keep serving.
 */
export class MalformedInstanceError extends WayfindError {
  /** Where the (first) entry lives: an etcd key, or `node/serviceId` for Consul. */
  readonly key: string
  /** The service whose answer held it, when known. */
  readonly service: string | undefined
  /** The field that failed, e.g. `Service.Port` (Consul) or `value` (etcd), when known. */
  readonly field: string | undefined
  /** Malformed entries this one error reports (one error per registry answer). @defaultValue 1 */
  readonly entries: number
  /** Each malformed entry of the answer (the first 100), with its field and reason. */
  readonly details: readonly MalformedEntry[]
  constructor(key: string, reason: string, options: MalformedInstanceErrorOptions = {}) {
    const { service, field, entries = 1, details = [], ...rest } = options
    super(
      ErrorCode.MALFORMED_INSTANCE,
      `Skipped malformed registry entry ${quote(key)}${service === undefined ? '' : ` of "${service}"`}: ${field === undefined ? '' : `${field}: `}${reason}`,
      rest,
    )
    this.key = key
    this.service = service
    this.field = field
    this.entries = entries
    this.details = Object.freeze(details.slice(0, 100))
  }
}

/** One malformed registry entry, as listed by {@link MalformedInstanceError.details}. */
export interface MalformedEntry {
  /** An etcd key, or Consul's `node/serviceId` (`#n`, its position, when a part is missing). */
  readonly entry: string
  readonly field: string
  readonly reason: string
}

/** Options of {@link MalformedInstanceError}. */
export interface MalformedInstanceErrorOptions extends WayfindErrorOptions {
  readonly service?: string
  readonly field?: string
  readonly entries?: number
  readonly details?: readonly MalformedEntry[]
}

/**
 * The registry answered something wayfind cannot use as it is, such as an `X-Consul-Index` that
 * is not a number in 1..2^64−1. Emitted (never thrown): the watch re-bases (a fresh read) and the
 * last good set keeps serving.
 */
export class InvalidResponseError extends WayfindError {
  readonly service: string
  constructor(service: string, message: string, options: WayfindErrorOptions = {}) {
    super(ErrorCode.INVALID_RESPONSE, message, { retryable: true, ...options })
    this.service = service
  }
}

/**
 * A registry answer went past one of the provider's `limits` (response bytes, instances per
 * service). Emitted (never thrown): the answer is dropped, the last good set keeps serving, and
 * the watch retries with backoff. `limit` names the option to raise.
 */
export class LimitExceededError extends WayfindError {
  /** The service whose answer it was, when known. */
  readonly service: string | undefined
  /** The option that was exceeded, e.g. `limits.maxResponseBytes`. */
  readonly limit: string
  /** Its value. */
  readonly max: number
  constructor(
    limit: string,
    max: number,
    message: string,
    options: WayfindErrorOptions & { readonly service?: string } = {},
  ) {
    const { service, ...rest } = options
    super(
      ErrorCode.LIMIT_EXCEEDED,
      `${message}; the last good instances keep serving (raise ${limit}, now ${max}, if that much is expected)`,
      { retryable: true, ...rest },
    )
    this.service = service
    this.limit = limit
    this.max = max
  }
}

/** Registering, renewing or deregistering the running service failed. */
export class RegistrationError extends WayfindError {
  constructor(message: string, options: WayfindErrorOptions = {}) {
    super(ErrorCode.REGISTRATION_FAILED, message, options)
  }
}

/**
 * Another live owner holds the instance id: `register()` rejects with it (unless `replace: true`),
 * and an owner whose entry another process took over gets it with `registrationLost` (it stops
 * renewing and will not delete the new owner's entry). Not retryable: the same registration
 * conflicts again until the other owner goes away.
 */
export class RegistrationConflictError extends WayfindError {
  readonly service: string
  readonly id: string
  constructor(service: string, id: string, detail: string, options: WayfindErrorOptions = {}) {
    super(ErrorCode.REGISTRATION_CONFLICT, `${service}/${id}: ${detail}`, {
      retryable: false,
      ...options,
    })
    this.service = service
    this.id = id
  }
}

/** An etcd lease (or a TTL registration) was lost; the registrar re-creates it. */
export class LeaseLostError extends WayfindError {
  constructor(message: string, options: WayfindErrorOptions = {}) {
    super(ErrorCode.LEASE_LOST, message, { retryable: true, ...options })
  }
}

/** A method was called on an object after `close()`. */
export class ClosedError extends WayfindError {
  constructor(what: string) {
    super(ErrorCode.CLOSED, `${what} was called after close()`)
  }
}

/** Longest part of a registry value an error message quotes. */
export const MAX_QUOTED_CHARS = 96

/**
 * A registry value as an error message quotes it: JSON-quoted, cut to its first
 * {@link MAX_QUOTED_CHARS} characters with its full length after, so a 1 MB value makes a
 * one-line message (and logs) rather than a 1 MB one.
 */
export function quote(value: string, max = MAX_QUOTED_CHARS): string {
  if (value.length <= max) return JSON.stringify(value)
  return `${JSON.stringify(value.slice(0, max))}… (${value.length} chars)`
}

/** Message of any thrown value, for wrapping. */
export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message
  return String(error)
}
