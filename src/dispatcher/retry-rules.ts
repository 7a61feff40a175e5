/**
 * Which errors and requests may be retried, and how long a server asks us to wait: pure
 * functions of an error, a request's options or a header, used by the request handler
 * (request.ts), which holds the decisions themselves.
 */
import type { IncomingHttpHeaders } from 'node:http'
import type { Dispatcher } from 'undici'

// Errors that mean nothing was written when they arrive before the attempt's start callback.
const BEFORE_SEND_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ENETDOWN',
  'EPIPE',
  'EAI_AGAIN',
  'ENOTFOUND',
  'EADDRNOTAVAIL',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_DESTROYED',
  'UND_ERR_INFO',
])
// A reset while a request was in flight: retryable only when idempotent and replayable.
const RESET_CODES = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET'])
// Not the instance's fault: does not count towards ejection.
const NEUTRAL_CODES = new Set([
  'UND_ERR_ABORTED',
  'ABORT_ERR',
  'UND_ERR_DESTROYED',
  'UND_ERR_CLOSED',
  'UND_ERR_INVALID_ARG',
])
// RFC 9110 §9.2.2.
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE'])

function codeOf(err: unknown): string {
  const c = (err as { code?: unknown } | null)?.code
  return typeof c === 'string' ? c : ''
}

/** An error that, before the start callback, means no byte of the request left the process. */
export function isBeforeSendError(err: Error): boolean {
  return BEFORE_SEND_CODES.has(codeOf(err))
}

/** A connection reset: retryable after sending when the request may be replayed. */
export function isReset(err: Error): boolean {
  return RESET_CODES.has(codeOf(err))
}

/** An abort or a closed pool: not the instance's fault, so not a failure for ejection. */
export function isAbortLike(err: Error): boolean {
  return NEUTRAL_CODES.has(codeOf(err)) || err.name === 'AbortError'
}

/** An idempotent method with a body that can be sent again (none, string, bytes; never a stream). */
export function mayReplay(opts: Dispatcher.DispatchOptions): boolean {
  const body: unknown = opts.body
  return (
    IDEMPOTENT.has(opts.method) &&
    (body === undefined || body === null || typeof body === 'string' || body instanceof Uint8Array)
  )
}

/** `Retry-After` in ms (delta-seconds or HTTP-date, RFC 9110 §10.2.3), or -1 when absent/invalid. */
export function parseRetryAfter(value: string | undefined, nowEpochMs: number): number {
  if (value === undefined) return -1
  const v = value.trim()
  if (/^\d+$/.test(v)) return Number(v) * 1000
  const date = Date.parse(v)
  return Number.isNaN(date) ? -1 : Math.max(0, date - nowEpochMs)
}

/** The `Retry-After` value of raw header pairs (legacy handlers) or a header object (new API). */
export function retryAfterOf(
  raw: Buffer[] | string[] | IncomingHttpHeaders | null,
): string | undefined {
  if (raw === null) return undefined
  if (!Array.isArray(raw)) {
    const v: unknown = raw['retry-after']
    if (typeof v === 'string') return v
    return Array.isArray(v) ? String(v[0]) : undefined
  }
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i]
    if (k !== undefined && k.length === 11 && k.toString().toLowerCase() === 'retry-after')
      return raw[i + 1]?.toString()
  }
  return undefined
}
