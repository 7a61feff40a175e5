/**
 * One request through the dispatcher: a handler wrapped around the caller's handler, in the shape
 * of undici's `RetryHandler` (lib/handler/retry-handler.js). It owns the request's whole life:
 * its state, its attempts (one attempt = one instance), its retries, its timers and the caller's
 * abort. It talks to the dispatcher only through {@link RequestSide}: "pick an instance,
 * excluding these", "send this attempt there", "wait for an instance", and the accounting of an
 * attempt's end.
 *
 * A request's life (one `state` field; `done` and `failed` are final; the diagram is in
 * docs/dispatcher.md, "A request's life"):
 *
 *   created                 → connecting (picked) | waiting-for-instance (no instance yet)
 *   waiting-for-instance    → connecting (one appeared) | failed (timeout, abort, close)
 *   connecting              → waiting-for-connection (all busy) | sent (start callback)
 *                             | connecting (error before sending: another instance, at once)
 *   waiting-for-connection  → connecting (a connection freed) | failed (abort, at once)
 *   sent                    → streaming (headers) | discarding (retryable status)
 *                             | backoff (reset) | failed
 *   discarding              → backoff (response read and dropped) | failed
 *   backoff                 → connecting (delay over) | failed (abort, close, none left)
 *   streaming               → done (complete, upgrade) | failed (error, abort)
 *
 * - Before sending (`connecting`, `waiting-for-connection`): undici calls the start callback
 *   right before the request line is written (`client-h1.js` writeH1), so an error before it
 *   means nothing left the process: any method and body goes to an instance not tried yet, at
 *   once, up to `connectRetries` times.
 * - After sending (`sent`, `discarding`): only idempotent methods with a replayable body, on a
 *   configured status or a connection reset, after a jittered backoff or `Retry-After`, up to
 *   `sentRetries` times, and only while the caller has seen nothing.
 * - `streaming`: the caller has the response; nothing is retried any more.
 * - The caller's abort ends the request at once while it waits (for an instance, a connection or
 *   a backoff), and through undici's controller once an attempt was started.
 *
 * Accounting per attempt: the dispatcher counts it in flight when it sends it; the request reports
 * its end exactly once, with its outcome (5xx or a local error = failure, the caller's abort =
 * cancelled), and a latency sample from the start callback to the final response headers.
 *
 * The wrapper mirrors the caller's handler style: a legacy handler (`onConnect/onHeaders/...`,
 * what undici `request()`/`fetch()` and Node's bundled fetch use) gets {@link LegacyRequest}, a
 * new-API handler gets {@link ModernRequest}. Mixing styles would make undici v7 wrap it again
 * and re-encode every header per response (docs/design/dispatch.md#handler-styles).
 */
/* eslint-disable @typescript-eslint/no-deprecated -- the legacy handler API is mirrored on purpose:
   undici v7 re-encodes every header when a legacy handler is wrapped
   (docs/design/dispatch.md#handler-styles). */
import type { Duplex } from 'node:stream'
import type { IncomingHttpHeaders } from 'node:http'
import { errors, type Dispatcher } from 'undici'
import type { CallOutcome } from '../balancer/load-tracker.js'
import type { PickResult } from '../balancer/strategy.js'
import { linkedController, onAbort } from '../core/abort.js'
import type { Clock } from '../core/clock.js'
import { keepAlive } from '../core/keep-alive.js'
import { NoInstancesError } from '../errors.js'
import type { Instance } from '../instance.js'
import type { Lease, PooledHandler } from './instance-pool.js'
import {
  isAbortLike,
  isBeforeSendError,
  isReset,
  mayReplay,
  parseRetryAfter,
  retryAfterOf,
} from './retry-rules.js'

type Handler = Dispatcher.DispatchHandler
type Controller = Dispatcher.DispatchController

/** Where a request is in its life (see the diagram at the top of this file). */
export type RequestState =
  /** Made, not picked yet. */
  | 'created'
  /** The service has no instance yet: waiting for one, bounded by the resolve timeout. */
  | 'waiting-for-instance'
  /** Handed to an instance's pool; no byte written yet. */
  | 'connecting'
  /** In the instance pool's queue: every connection is busy. */
  | 'waiting-for-connection'
  /** Being written, or written: no response yet. */
  | 'sent'
  /** A retryable status arrived: its response is read and dropped, then the request backs off. */
  | 'discarding'
  /** The caller has the response headers: no retry any more. */
  | 'streaming'
  /** Waiting out the delay before the next attempt. */
  | 'backoff'
  /** The caller got its last callback (complete or upgrade). */
  | 'done'
  /** The caller got its error. */
  | 'failed'

/** Retry limits and delays (the dispatcher's parsed `retry` option; zeros when disabled). */
export interface RetryPolicy {
  readonly connectRetries: number
  readonly sentRetries: number
  readonly statusCodes: ReadonlySet<number> | undefined
  readonly retryAfterMaxMs: number
  /** Delay before retry number `n` (1-based) after sending. */
  backoffMs(n: number): number
}

/** The route a request was given: the service it goes to (and what the dispatcher caches). */
export interface RequestRoute {
  readonly service: string
}

/** All a request needs from the dispatcher. */
export interface RequestSide {
  readonly clock: Clock
  readonly retry: RetryPolicy
  /** Aborted when the dispatcher closes or is destroyed: a waiting request fails with its reason. */
  readonly shutdown: AbortSignal
  /**
   * Picks an instance for `request`, avoiding ejected instances and `exclude` (instances
   * already tried); with `allowTried`, falls back to tried ones when nothing else is left.
   */
  pick(
    request: RequestHandler,
    exclude: ReadonlySet<string> | undefined,
    allowTried: boolean,
  ): PickResult
  /**
   * Sends this attempt to `instance`: starts its accounting (calling
   * {@link RequestHandler.track}) and hands the request to the instance's pool. Returns the
   * pool's backpressure answer.
   */
  send(request: RequestHandler, instance: Instance): boolean
  /** The attempt on `instance` ended (exactly once per {@link send}). */
  attemptEnded(
    request: RequestHandler,
    instance: Instance,
    slot: number,
    outcome: CallOutcome,
  ): void
  /** A latency sample of the attempt on `slot`. */
  observe(slot: number, rttMs: number, now: number): void
  /** Resolves once the service has an instance; rejects on the resolve timeout or `signal`. */
  waitForInstance(service: string, signal: AbortSignal): Promise<void>
  /** Diagnostics: the request is about to be sent again. */
  retrying(request: RequestHandler, reason: string, delayMs: number): void
}

/** The request's life and retry decisions; subclasses adapt the two handler styles. */
export abstract class RequestHandler implements PooledHandler {
  readonly opts: Dispatcher.DispatchOptions
  readonly route: RequestRoute
  readonly #side: RequestSide
  #state: RequestState = 'created'
  /** Instances already tried (made on the first retry). */
  #tried: Set<string> | undefined
  #connectRetries = 0
  #sentRetries = 0
  #attempts = 0
  /** The caller's abort reason, once it aborted. */
  #abortReason: Error | undefined
  /** The caller got its start callback (once per request, whatever the attempts). */
  #callerStarted = false
  /**
   * Ends the current wait (for an instance or a backoff): clears its timer and listeners. Set
   * only in those two states.
   */
  #cancelWait: ((reason?: Error) => void) | undefined

  // The current attempt.
  #instance: Instance | undefined
  #slot = -1
  #timed = false
  /** When the timed attempt was written (clock ms); -1 before that or when not timed. */
  #sentAt = -1
  #status = 0
  #retryDelayMs = 0
  /** The connection of the current attempt (wayfind's own instance pools only). */
  #lease: Lease | undefined

  constructor(opts: Dispatcher.DispatchOptions, route: RequestRoute, side: RequestSide) {
    this.opts = opts
    this.route = route
    this.#side = side
  }

  get state(): RequestState {
    return this.#state
  }

  get isFinished(): boolean {
    return this.#state === 'done' || this.#state === 'failed'
  }

  /** The instance of the current (or last) attempt. */
  get instance(): Instance | undefined {
    return this.#instance
  }

  /** Attempts sent so far. */
  get attempts(): number {
    return this.#attempts
  }

  /** Starts the request. Returns the dispatcher's backpressure answer (`dispatch()`'s result). */
  start(): boolean {
    const result = this.#side.pick(this, undefined, false)
    if (result.kind === 'pick') return this.#attempt(result.instance)
    if (result.kind === 'queue') {
      this.#waitForInstance()
      return true
    }
    this.#fail(result.error)
    return false
  }

  /** The dispatcher's accounting of the attempt being sent (called from {@link RequestSide.send}). */
  track(slot: number, timed: boolean): void {
    this.#slot = slot
    this.#timed = timed
  }

  // PooledHandler: what wayfind's own instance pool calls.

  waitForConnection(): void {
    this.#state = 'waiting-for-connection'
    // The caller's start callback now, so that its abort reaches us while we wait.
    this.#startCaller()
  }

  useConnection(lease: Lease): void {
    this.#state = 'connecting'
    this.#lease = lease
  }

  attemptError(err: Error): void {
    this.onAttemptError(err)
  }

  /** The caller aborted: stop the wait or the attempt. */
  userAbort(reason: Error | undefined): void {
    if (this.isFinished || this.#abortReason !== undefined) return
    const r = (this.#abortReason = reason ?? new errors.RequestAbortedError())
    switch (this.#state) {
      case 'sent':
      case 'discarding':
      case 'streaming':
        // Through undici: the attempt's error callback then reports the abort.
        this.abortAttempt(r)
        return
      case 'connecting':
        // The start callback sees the reason and aborts the attempt then.
        return
      case 'created':
      case 'waiting-for-instance':
      case 'waiting-for-connection':
      case 'backoff':
        // Waiting (for an instance, a connection or a backoff): answer now. A pool skips a
        // finished request in its queue.
        this.#fail(r)
        return
      case 'done':
      case 'failed':
        return
    }
  }

  /** Delivers a terminal error to the caller, ending any attempt or wait. */
  #fail(err: Error): void {
    if (this.isFinished) return
    this.#endAttempt('cancelled')
    this.#state = 'failed'
    this.#cancelWait?.(err)
    this.deliverError(err)
  }

  /** Calls the caller's start callback before any attempt (the request waits). */
  protected abstract startCaller(context: unknown): void
  protected abstract abortAttempt(reason: Error): void
  protected abstract deliverError(err: Error): void

  /** The caller's abort reason, once it aborted. */
  protected get abortReason(): Error | undefined {
    return this.#abortReason
  }

  /** Whether the current response is being dropped for a retry. */
  protected get discarding(): boolean {
    return this.#state === 'discarding'
  }

  /** Calls the caller's start callback once per request. */
  #startCaller(context?: unknown): void {
    if (this.#callerStarted) return
    this.#callerStarted = true
    this.startCaller(context)
  }

  #attempt(instance: Instance): boolean {
    this.#state = 'connecting'
    this.#instance = instance
    this.#attempts++
    this.#sentAt = -1
    this.#status = 0
    return this.#side.send(this, instance)
  }

  /**
   * The attempt is being written (undici calls the start callback right before the request
   * line). The latency clock starts here, not at dispatch: time spent waiting for one of the
   * pool's connections is our own queue, already counted by in-flight, and depends on where
   * we sent other requests. Linkerd's peak EWMA likewise never sees it: tower's balancer only
   * calls an endpoint once it is ready. Returns false when the caller aborted meanwhile.
   */
  protected onAttemptStart(context: unknown): boolean {
    this.#state = 'sent'
    if (this.#timed) this.#sentAt = this.#side.clock.now()
    if (this.#abortReason !== undefined) {
      this.abortAttempt(this.#abortReason)
      return false
    }
    this.#startCaller(context)
    return true
  }

  /**
   * Final response headers arrived (raw pairs from a legacy callback, an object from the new
   * API; only read for a retryable status). Returns true when the response is dropped for a retry.
   */
  protected onAttemptHeaders(
    status: number,
    headers: Buffer[] | string[] | IncomingHttpHeaders | null,
  ): boolean {
    if (status < 200) return false
    this.#status = status
    if (this.#sentAt >= 0) {
      const now = this.#side.clock.now()
      this.#side.observe(this.#slot, now - this.#sentAt, now)
    }
    const retry = this.#side.retry
    if (retry.statusCodes?.has(status) === true && this.#mayRetryAfterSending()) {
      const ra = parseRetryAfter(retryAfterOf(headers), Date.now())
      if (ra <= retry.retryAfterMaxMs) {
        this.#state = 'discarding'
        this.#retryDelayMs = ra >= 0 ? ra : retry.backoffMs(this.#sentRetries + 1)
        return true
      }
    }
    this.#state = 'streaming'
    return false
  }

  /** Response complete. Returns true when the request goes on (a retry is scheduled). */
  protected onAttemptComplete(): boolean {
    const retrying = this.#state === 'discarding' && this.#abortReason === undefined
    this.#endAttempt(this.#status >= 500 ? 'failure' : 'success')
    if (retrying) {
      this.#sentRetries++
      this.#backoff(this.#retryDelayMs, `status ${this.#status}`)
      return true
    }
    if (this.#abortReason !== undefined && this.#state === 'discarding') {
      this.#fail(this.#abortReason)
      return true
    }
    this.#state = 'done'
    return false
  }

  /** Upgrade (CONNECT/WebSocket) completed the attempt. */
  protected onAttemptUpgrade(): void {
    this.#endAttempt('success')
    this.#state = 'done'
  }

  /**
   * The attempt ended in `err`: retried when the rules allow, else delivered to the caller (a
   * caller abort that raced a connect failure reports the abort, as the caller expects).
   */
  protected onAttemptError(err: Error): void {
    if (this.isFinished) return
    const before = this.#state
    const aborted = this.#abortReason !== undefined
    this.#endAttempt(aborted || isAbortLike(err) ? 'cancelled' : 'failure')
    const retry = this.#side.retry
    if (
      !aborted &&
      (before === 'connecting' || before === 'waiting-for-connection') &&
      isBeforeSendError(err) &&
      this.#connectRetries < retry.connectRetries
    ) {
      this.#connectRetries++
      if (this.#retryNow()) return
    } else if (
      (before === 'sent' || before === 'discarding') &&
      isReset(err) &&
      this.#mayRetryAfterSending()
    ) {
      this.#sentRetries++
      this.#backoff(retry.backoffMs(this.#sentRetries), errorCode(err))
      return
    }
    this.#state = 'failed'
    this.deliverError(this.#abortReason ?? err)
  }

  /** Ends the current attempt's accounting, once: releases its connection, reports its outcome. */
  #endAttempt(outcome: CallOutcome): void {
    const instance = this.#instance
    if (instance === undefined || this.#slot < 0) return
    const slot = this.#slot
    this.#slot = -1
    const lease = this.#lease
    if (lease !== undefined) {
      this.#lease = undefined
      lease.release()
    }
    this.#side.attemptEnded(this, instance, slot, outcome)
  }

  /** Records the current attempt's instance as tried, for the next pick's exclude set. */
  #markTried(): void {
    if (this.#instance !== undefined) (this.#tried ??= new Set()).add(this.#instance.key)
  }

  #mayRetryAfterSending(): boolean {
    return (
      this.#abortReason === undefined &&
      this.#sentRetries < this.#side.retry.sentRetries &&
      mayReplay(this.opts)
    )
  }

  /** Nothing was sent: another instance at once. False when none is left (the caller then fails). */
  #retryNow(): boolean {
    if (this.#side.shutdown.aborted) return false
    this.#markTried()
    const result = this.#side.pick(this, this.#tried, false)
    if (result.kind !== 'pick') return false
    this.#side.retrying(this, 'before-send', 0)
    // The pool's answer is backpressure, not failure: a retry ignores it.
    this.#attempt(result.instance)
    return true
  }

  /** Waits `delayMs`, then sends again, preferring an instance not tried yet. */
  #backoff(delayMs: number, reason: string): void {
    if (this.#side.shutdown.aborted) {
      this.#fail(shutdownReason(this.#side.shutdown))
      return
    }
    this.#state = 'backoff'
    this.#markTried()
    this.#side.retrying(this, reason, delayMs)
    // The caller awaits this retry: keep the process alive until it is sent or cancelled.
    const release = keepAlive.hold()
    const timer = this.#side.clock.setTimeout(() => {
      this.#cancelWait?.()
      const result = this.#side.pick(this, this.#tried, true)
      if (result.kind === 'pick') this.#attempt(result.instance)
      else
        this.#fail(
          new NoInstancesError(this.route.service, `no instance left to retry on after ${reason}`),
        )
    }, delayMs)
    this.#cancelWait = () => {
      this.#cancelWait = undefined
      timer.clear()
      off()
      release()
    }
    // Not yet shut down (checked above), so this cannot fire before `off` exists.
    const off = onAbort(this.#side.shutdown, () => {
      this.#fail(shutdownReason(this.#side.shutdown))
    })
  }

  /** No instance yet: wait for one (bounded by the resolve timeout), the caller started. */
  #waitForInstance(): void {
    this.#state = 'waiting-for-instance'
    // The caller's start callback now, so that its abort signal reaches us while we wait.
    this.#startCaller()
    if (this.isFinished) return
    const service = this.route.service
    const { controller, dispose } = linkedController(this.#side.shutdown)
    this.#cancelWait = (reason) => {
      this.#cancelWait = undefined
      controller.abort(reason)
    }
    this.#side.waitForInstance(service, controller.signal).then(
      () => {
        dispose()
        this.#cancelWait = undefined
        if (this.isFinished) return
        if (this.#side.shutdown.aborted) {
          this.#fail(shutdownReason(this.#side.shutdown))
          return
        }
        const result = this.#side.pick(this, undefined, false)
        if (result.kind === 'pick') this.#attempt(result.instance)
        else this.#fail(new NoInstancesError(service))
      },
      (err: unknown) => {
        dispose()
        this.#cancelWait = undefined
        this.#fail(err instanceof Error ? err : new NoInstancesError(service, String(err)))
      },
    )
  }
}

/** Wrapper for legacy handlers (`onConnect/onHeaders/onData/onComplete/onError`). */
export class LegacyRequest extends RequestHandler implements Handler {
  readonly #handler: Handler
  #abort: ((err?: Error) => void) | undefined

  constructor(
    opts: Dispatcher.DispatchOptions,
    route: RequestRoute,
    side: RequestSide,
    handler: Handler,
  ) {
    super(opts, route, side)
    this.#handler = handler
  }

  protected startCaller(context: unknown): void {
    ;(
      this.#handler.onConnect as
        ((abort: (err?: Error) => void, context?: unknown) => void) | undefined
    )?.call(
      this.#handler,
      (err?: Error) => {
        this.userAbort(err)
      },
      context,
    )
  }

  onConnect(abort: (err?: Error) => void, context?: unknown): void {
    this.#abort = abort
    this.onAttemptStart(context)
  }

  onResponseStarted(): void {
    if (!this.discarding) this.#handler.onResponseStarted?.()
  }

  onHeaders(
    statusCode: number,
    rawHeaders: Buffer[],
    resume: () => void,
    statusText: string,
  ): boolean {
    if (this.discarding) return true
    if (this.onAttemptHeaders(statusCode, rawHeaders)) return true
    return this.#handler.onHeaders?.(statusCode, rawHeaders, resume, statusText) ?? true
  }

  onData(chunk: Buffer): boolean {
    if (this.discarding) return true
    return this.#handler.onData?.(chunk) ?? true
  }

  onComplete(trailers: string[] | null): void {
    if (this.onAttemptComplete()) return
    this.#handler.onComplete?.(trailers)
  }

  onError(err: Error): void {
    this.onAttemptError(err)
  }

  onUpgrade(statusCode: number, headers: Buffer[] | string[] | null, socket: Duplex): void {
    this.onAttemptUpgrade()
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
export class ModernRequest extends RequestHandler implements Handler, Controller {
  readonly #handler: Handler
  #controller: Controller | undefined

  constructor(
    opts: Dispatcher.DispatchOptions,
    route: RequestRoute,
    side: RequestSide,
    handler: Handler,
  ) {
    super(opts, route, side)
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

  protected startCaller(context: unknown): void {
    this.#handler.onRequestStart?.(this, context ?? {})
  }

  onRequestStart(controller: Controller, context: unknown): void {
    this.#controller = controller
    this.onAttemptStart(context)
  }

  onRequestUpgrade(
    controller: Controller,
    statusCode: number,
    headers: IncomingHttpHeaders,
    socket: Duplex,
  ): void {
    this.#controller = controller
    this.onAttemptUpgrade()
    this.#handler.onRequestUpgrade?.(this, statusCode, headers, socket)
  }

  onResponseStart(
    controller: Controller,
    statusCode: number,
    headers: IncomingHttpHeaders,
    statusMessage?: string,
  ): void {
    this.#controller = controller
    if (this.discarding) return
    if (this.onAttemptHeaders(statusCode, headers)) return
    this.#handler.onResponseStart?.(this, statusCode, headers, statusMessage)
  }

  onResponseData(_controller: Controller, chunk: Buffer): void {
    if (this.discarding) return
    this.#handler.onResponseData?.(this, chunk)
  }

  onResponseEnd(_controller: Controller, trailers: IncomingHttpHeaders): void {
    if (this.onAttemptComplete()) return
    this.#handler.onResponseEnd?.(this, trailers)
  }

  onResponseError(_controller: Controller | null, err: Error): void {
    this.onAttemptError(err)
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

/** True when `handler` uses the new undici handler API. */
export function isModernHandler(handler: Handler): boolean {
  return typeof handler.onRequestStart === 'function'
}

function errorCode(err: Error): string {
  const c = (err as { code?: unknown }).code
  return typeof c === 'string' ? c : err.name
}

function shutdownReason(signal: AbortSignal): Error {
  const r: unknown = signal.reason
  return r instanceof Error ? r : new Error(String(r))
}
