/**
 * One request through the dispatcher, as a handler wrapper around the caller's handler.
 *
 * The wrapper mirrors the caller's handler style: a legacy handler (`onConnect/onHeaders/...`,
 * what undici `request()`/`fetch()` and Node's bundled fetch use) gets {@link LegacyCall}, a
 * new-API handler (`onRequestStart/onResponseStart/...`) gets {@link ModernCall}. Mixing styles
 * would make undici v7 wrap it again and re-encode every header per response
 * (docs/design/dispatch.md#handler-styles).
 *
 * Bookkeeping per attempt (one attempt = one instance): in-flight `+1` when sent and `-1` exactly
 * once at end, error or upgrade; latency sampled at the first final response headers; outcome
 * (5xx or local error = failure, user abort = cancelled) feeds the failure counter.
 *
 * Retry rules: an error before the attempt started (`onConnect`/`onRequestStart` is called right
 * before the request line is written, undici `client-h1.js` writeH1) means nothing was sent, so
 * any method and any body can go to another instance at once. After sending, only idempotent
 * methods with a replayable body are retried, on a configured status or a connection reset,
 * after a jittered backoff or `Retry-After`, and only while the caller has seen nothing.
 */
/* eslint-disable @typescript-eslint/no-deprecated -- the legacy handler API is mirrored on purpose:
   undici v7 re-encodes every header when a legacy handler is wrapped
   (docs/design/dispatch.md#handler-styles). */
import type { Duplex } from 'node:stream'
import type { IncomingHttpHeaders } from 'node:http'
import { errors, type Dispatcher } from 'undici'
import type { CallOutcome } from '../balancer/load-tracker.js'
import type { TimerHandle } from '../core/clock.js'
import type { Instance } from '../instance.js'
import type { Lease, PooledHandler } from './instance-pool.js'

type Handler = Dispatcher.DispatchHandler
type Controller = Dispatcher.DispatchController

/** Where a service request goes: the service, and the logical origin whose Host is kept. */
export interface Route {
  readonly service: string
  /** `http:` or `https:`. */
  readonly protocol: string
  /** Host name of the logical origin: the default TLS servername of its pools. */
  readonly hostname: string
}

/** What a call needs from the dispatcher. */
export interface CallHost {
  now(): number
  startSlot(slot: number): void
  observeSlot(slot: number, rttMs: number, now: number): void
  /** Ends an attempt on `instance` (exactly once per start). */
  endAttempt(call: Call, instance: Instance, slot: number, outcome: CallOutcome): void
  /** Sends the call again, avoiding tried instances. False when no instance is available. */
  resend(call: Call, allowTried: boolean): boolean
  /** Sends again after `delayMs`; the host tracks the timer so close() can cancel it. */
  resendLater(call: Call, delayMs: number, reason: string): void
  /** Stops a pending {@link resendLater} (the caller aborted). */
  cancelResend(call: Call): void
  readonly connectRetries: number
  readonly sentRetries: number
  readonly statusCodes: ReadonlySet<number> | undefined
  readonly retryAfterMaxMs: number
  backoffMs(retry: number): number
}

// Errors that can only happen before a byte was written when no start callback was seen.
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
// Not the instance's fault: do not count towards ejection.
const NEUTRAL_CODES = new Set([
  'UND_ERR_ABORTED',
  'ABORT_ERR',
  'UND_ERR_DESTROYED',
  'UND_ERR_CLOSED',
  'UND_ERR_INVALID_ARG',
])
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE'])

function codeOf(err: unknown): string {
  const c = (err as { code?: unknown } | null)?.code
  return typeof c === 'string' ? c : ''
}

function replayableBody(body: unknown): boolean {
  return (
    body === undefined || body === null || typeof body === 'string' || body instanceof Uint8Array
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

/** Shared per-request state and retry decisions; subclasses adapt the two handler styles. */
export abstract class Call implements PooledHandler {
  readonly opts: Dispatcher.DispatchOptions
  readonly route: Route
  readonly host: CallHost
  /** Instances already tried by this request (created on the first retry). */
  tried: Set<string> | undefined
  connectRetries = 0
  sentRetries = 0
  /** Total attempts sent. */
  attempts = 0
  /** Which busy requests are timed (1 in `timeMask + 1` per instance); set by the host per pick. */
  timeMask = 7
  /** Pending backoff timer, owned by the host. */
  resendTimer: TimerHandle | undefined
  abortReason: Error | undefined
  /** The connection of the current attempt (wayfind's own instance pools only). */
  lease: Lease | undefined
  /** Waiting in an instance pool for a connection: an abort can answer at once. */
  queued = false

  // Current attempt.
  instance: Instance | undefined
  #slot = -1
  #timed = false
  /** When the timed attempt was written (clock ms); -1 before that or when not timed. */
  #sentAt = -1
  #open = false
  protected started = false
  protected status = 0
  protected swallowing = false
  #retryDelayMs = 0

  /** The caller has seen response headers: nothing can be retried any more. */
  protected delivered = false
  /** The caller got its terminal callback. */
  protected finished = false
  /** The caller got its start callback (once per request, whatever the attempts). */
  protected userStarted = false

  constructor(opts: Dispatcher.DispatchOptions, route: Route, host: CallHost) {
    this.opts = opts
    this.route = route
    this.host = host
  }

  get isFinished(): boolean {
    return this.finished
  }

  /** Every connection of the instance's pool is busy: the call waits there. */
  waitForConnection(): void {
    this.queued = true
    this.startEarly()
  }

  /** The call goes out on `lease` (wayfind's own pools); released when the attempt ends. */
  useConnection(lease: Lease): void {
    this.queued = false
    this.lease = lease
  }

  /** The pool could not take the call (closed). */
  attemptError(err: Error): void {
    this.errored(err)
  }

  /** Called by the host right before handing this call to an instance's pool. */
  begin(instance: Instance, slot: number, timed: boolean): void {
    this.instance = instance
    this.#slot = slot
    this.#open = true
    this.started = false
    this.status = 0
    this.swallowing = false
    this.attempts++
    this.#timed = timed
    this.#sentAt = -1
    this.host.startSlot(slot)
  }

  /**
   * The attempt is being written (undici calls the start callback right before the request
   * line). The latency clock starts here, not at dispatch: time spent waiting for one of the
   * pool's connections is our own queue, already counted by in-flight, and depends on where
   * we sent other requests. Counting it made the estimate chase our own placement. Linkerd's
   * peak EWMA likewise never sees it: tower's balancer only calls an endpoint once it is ready.
   */
  protected sent(): void {
    this.started = true
    if (this.#timed) this.#sentAt = this.host.now()
  }

  /** Records `key` as tried (for the next pick's exclude set). */
  markTried(): void {
    if (this.instance === undefined) return
    ;(this.tried ??= new Set()).add(this.instance.key)
  }

  #end(outcome: CallOutcome): void {
    if (!this.#open) return
    this.#open = false
    const lease = this.lease
    if (lease !== undefined) {
      this.lease = undefined
      lease.release()
    }
    this.host.endAttempt(this, this.instance as Instance, this.#slot, outcome)
  }

  get #mayResendAfterSend(): boolean {
    return (
      !this.delivered &&
      this.abortReason === undefined &&
      this.sentRetries < this.host.sentRetries &&
      IDEMPOTENT.has(this.opts.method) &&
      replayableBody(this.opts.body)
    )
  }

  /**
   * Final response headers arrived (raw pairs from a legacy callback, an object from the new
   * API; only read for a retryable status). Returns true when the response is swallowed for a retry.
   */
  protected headers(
    status: number,
    headers: Buffer[] | string[] | IncomingHttpHeaders | null,
  ): boolean {
    if (status < 200) return false
    this.status = status
    if (this.#sentAt >= 0) {
      const now = this.host.now()
      this.host.observeSlot(this.#slot, now - this.#sentAt, now)
    }
    if (this.host.statusCodes?.has(status) === true && this.#mayResendAfterSend) {
      const ra = parseRetryAfter(retryAfterOf(headers), Date.now())
      if (ra <= this.host.retryAfterMaxMs) {
        this.swallowing = true
        this.#retryDelayMs = ra >= 0 ? ra : this.host.backoffMs(this.sentRetries + 1)
        return true
      }
    }
    this.delivered = true
    return false
  }

  /** Response complete. Returns true when the call goes on (retry scheduled). */
  protected complete(): boolean {
    this.#end(this.status >= 500 ? 'failure' : 'success')
    if (this.swallowing && !this.finished) {
      this.sentRetries++
      this.markTried()
      this.host.resendLater(this, this.#retryDelayMs, `status ${this.status}`)
      return true
    }
    this.finished = true
    return false
  }

  /** Upgrade (CONNECT/WebSocket) completed the attempt. */
  protected upgraded(): void {
    this.#end('success')
    this.finished = true
  }

  /** The attempt errored. Returns true when the error is handled (retried or already finished). */
  protected failed(err: Error): boolean {
    if (this.finished) return true
    const code = codeOf(err)
    const cancelled =
      this.abortReason !== undefined || NEUTRAL_CODES.has(code) || err.name === 'AbortError'
    this.#end(cancelled ? 'cancelled' : 'failure')
    if (
      this.abortReason === undefined &&
      !this.started &&
      !this.swallowing &&
      BEFORE_SEND_CODES.has(code)
    ) {
      if (this.connectRetries < this.host.connectRetries) {
        this.connectRetries++
        this.markTried()
        if (this.host.resend(this, false)) return true
      }
    } else if (
      (this.started || this.swallowing) &&
      RESET_CODES.has(code) &&
      this.#mayResendAfterSend
    ) {
      this.sentRetries++
      this.markTried()
      this.host.resendLater(this, this.host.backoffMs(this.sentRetries), code)
      return true
    }
    this.finished = true
    return false
  }

  /** The caller aborted: stop the current attempt or the pending backoff. */
  userAbort(reason: Error | undefined): void {
    if (this.finished || this.abortReason !== undefined) return
    this.abortReason = reason ?? new errors.RequestAbortedError()
    if (this.#open && this.started) this.abortAttempt(this.abortReason)
    else if (this.queued) {
      // Still waiting for a connection: answer now; the pool skips finished calls.
      this.queued = false
      this.fail(this.abortReason)
    } else if (this.resendTimer !== undefined || !this.#open) {
      this.host.cancelResend(this)
      this.fail(this.abortReason)
    }
    // Open but not started: the start callback sees abortReason and aborts then.
  }

  /**
   * The attempt ended in `err`: retried when the rules allow, else delivered to the caller (a
   * caller abort that raced a connect failure reports the abort, as the caller expects).
   */
  errored(err: Error): void {
    if (this.failed(err)) return
    this.deliverError(this.abortReason ?? err)
  }

  /** Delivers a terminal error to the caller (no attempt in progress). */
  fail(err: Error): void {
    if (this.finished) return
    this.#end('cancelled')
    this.finished = true
    this.deliverError(err)
  }

  /** Calls the caller's start callback before any attempt (the request waits for instances). */
  abstract startEarly(): void
  protected abstract abortAttempt(reason: Error): void
  protected abstract deliverError(err: Error): void
}

/** Wrapper for legacy handlers (`onConnect/onHeaders/onData/onComplete/onError`). */
export class LegacyCall extends Call implements Handler {
  readonly #handler: Handler
  #abort: ((err?: Error) => void) | undefined
  #userAbortFn: ((err?: Error) => void) | undefined

  constructor(opts: Dispatcher.DispatchOptions, route: Route, host: CallHost, handler: Handler) {
    super(opts, route, host)
    this.#handler = handler
  }

  #userStart(context?: unknown): void {
    if (this.userStarted) return
    this.userStarted = true
    this.#userAbortFn = (err?: Error) => {
      this.userAbort(err)
    }
    ;(
      this.#handler.onConnect as
        ((abort: (err?: Error) => void, context?: unknown) => void) | undefined
    )?.call(this.#handler, this.#userAbortFn, context)
  }

  startEarly(): void {
    this.#userStart()
  }

  onConnect(abort: (err?: Error) => void, context?: unknown): void {
    this.sent()
    this.#abort = abort
    if (this.abortReason !== undefined) {
      abort(this.abortReason)
      return
    }
    this.#userStart(context)
  }

  onResponseStarted(): void {
    if (!this.swallowing) this.#handler.onResponseStarted?.()
  }

  onHeaders(
    statusCode: number,
    rawHeaders: Buffer[],
    resume: () => void,
    statusText: string,
  ): boolean {
    if (this.swallowing) return true
    if (this.headers(statusCode, rawHeaders)) return true
    return this.#handler.onHeaders?.(statusCode, rawHeaders, resume, statusText) ?? true
  }

  onData(chunk: Buffer): boolean {
    if (this.swallowing) return true
    return this.#handler.onData?.(chunk) ?? true
  }

  onComplete(trailers: string[] | null): void {
    if (this.complete()) return
    this.#handler.onComplete?.(trailers)
  }

  onError(err: Error): void {
    this.errored(err)
  }

  onUpgrade(statusCode: number, headers: Buffer[] | string[] | null, socket: Duplex): void {
    this.upgraded()
    this.#handler.onUpgrade?.(statusCode, headers, socket)
  }

  onBodySent(chunkSize: number, totalBytesSent: number): void {
    this.#handler.onBodySent?.(chunkSize, totalBytesSent)
  }

  protected abortAttempt(reason: Error): void {
    this.#abort?.(reason)
  }

  protected deliverError(err: Error): void {
    if (typeof this.#handler.onError !== 'function') throw err
    this.#handler.onError(err)
  }
}

/**
 * Wrapper for new-API handlers. It is also the controller the caller sees, stable across
 * attempts: abort/pause/resume go to the current attempt's undici controller.
 */
export class ModernCall extends Call implements Handler, Controller {
  readonly #handler: Handler
  #controller: Controller | undefined

  constructor(opts: Dispatcher.DispatchOptions, route: Route, host: CallHost, handler: Handler) {
    super(opts, route, host)
    this.#handler = handler
  }

  get aborted(): boolean {
    return this.abortReason !== undefined || this.#controller?.aborted === true
  }
  get paused(): boolean {
    return this.#controller?.paused === true
  }
  get reason(): Error | null {
    return this.abortReason ?? this.#controller?.reason ?? null
  }
  get rawHeaders(): NonNullable<Controller['rawHeaders']> | null {
    return this.#controller?.rawHeaders ?? null
  }
  get rawTrailers(): NonNullable<Controller['rawTrailers']> | null {
    return this.#controller?.rawTrailers ?? null
  }
  abort(reason: Error): void {
    this.userAbort(reason)
  }
  pause(): void {
    this.#controller?.pause()
  }
  resume(): void {
    this.#controller?.resume()
  }

  startEarly(): void {
    if (this.userStarted) return
    this.userStarted = true
    this.#handler.onRequestStart?.(this, {})
  }

  onRequestStart(controller: Controller, context: unknown): void {
    this.sent()
    this.#controller = controller
    if (this.abortReason !== undefined) {
      controller.abort(this.abortReason)
      return
    }
    if (this.userStarted) return
    this.userStarted = true
    this.#handler.onRequestStart?.(this, context)
  }

  onRequestUpgrade(
    controller: Controller,
    statusCode: number,
    headers: IncomingHttpHeaders,
    socket: Duplex,
  ): void {
    this.#controller = controller
    this.upgraded()
    this.#handler.onRequestUpgrade?.(this, statusCode, headers, socket)
  }

  onResponseStart(
    controller: Controller,
    statusCode: number,
    headers: IncomingHttpHeaders,
    statusMessage?: string,
  ): void {
    this.#controller = controller
    if (this.swallowing) return
    if (this.headers(statusCode, headers)) return
    this.#handler.onResponseStart?.(this, statusCode, headers, statusMessage)
  }

  onResponseData(_controller: Controller, chunk: Buffer): void {
    if (this.swallowing) return
    this.#handler.onResponseData?.(this, chunk)
  }

  onResponseEnd(_controller: Controller, trailers: IncomingHttpHeaders): void {
    if (this.complete()) return
    this.#handler.onResponseEnd?.(this, trailers)
  }

  onResponseError(_controller: Controller | null, err: Error): void {
    this.errored(err)
  }

  protected abortAttempt(reason: Error): void {
    this.#controller?.abort(reason)
  }

  protected deliverError(err: Error): void {
    if (typeof this.#handler.onResponseError === 'function')
      this.#handler.onResponseError(this, err)
    else if (typeof this.#handler.onError === 'function') this.#handler.onError(err)
    else throw err
  }
}

function retryAfterOf(raw: Buffer[] | string[] | IncomingHttpHeaders | null): string | undefined {
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

/** True when `handler` uses the new undici handler API. */
export function isModernHandler(handler: Handler): boolean {
  return typeof handler.onRequestStart === 'function'
}
