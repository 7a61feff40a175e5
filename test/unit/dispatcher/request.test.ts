/**
 * The request state machine (src/dispatcher/request.ts) on its own: a fake dispatcher side
 * (pick and send stubs, a controllable wait for instances) and a fake clock. The test plays
 * undici's part by calling the handler callbacks an instance's pool would call, and asserts the
 * exact sequence of states the request goes through.
 */
/* eslint-disable @typescript-eslint/no-deprecated -- the test plays undici's part towards a
   legacy-style request handler, whose callbacks undici types mark deprecated. */
import { describe, expect, it } from 'vitest'
import type { Dispatcher } from 'undici'
import type { CallOutcome } from '../../../src/balancer/load-tracker.js'
import type { PickResult } from '../../../src/balancer/strategy.js'
import { NoInstancesError, ResolveTimeoutError } from '../../../src/errors.js'
import { createInstance, type Instance } from '../../../src/instance.js'
import {
  LegacyRequest,
  type RequestHandler,
  type RequestSide,
} from '../../../src/dispatcher/request.js'
import { FakeClock } from '../../support/fake-clock.js'

const RESOLVE_TIMEOUT_MS = 1_000

function instance(id: string): Instance {
  return createInstance({ id, service: 'payments', host: '127.0.0.1', port: 1 })
}

function errorWithCode(code: string): Error {
  return Object.assign(new Error(code), { code })
}

/** A settled-once promise a test can await (events, not sleeps). */
function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void
  const promise = new Promise<T>((r) => {
    resolve = r
  })
  return { promise, resolve }
}

/** The dispatcher's side of a request, faked: instances, picks, sends and the wait are visible. */
class FakeSide implements RequestSide {
  readonly clock = new FakeClock()
  readonly retry = {
    connectRetries: 2,
    sentRetries: 2,
    statusCodes: new Set([502, 503, 504]),
    retryAfterMaxMs: 5_000,
    backoffMs: (n: number): number => 10 * n,
  }
  readonly #shutdown = new AbortController()
  readonly shutdown = this.#shutdown.signal
  instances: Instance[] = []
  readonly sends: string[] = []
  readonly outcomes: CallOutcome[] = []
  readonly trace: string[] = []
  /** The signal of the current wait for instances, once one started. */
  waitSignal: AbortSignal | undefined
  #waiters: (() => void)[] = []
  #nextSend = deferred<string>()
  request: RequestHandler | undefined

  /** Records the request's state, once per change. */
  record(label?: string): void {
    const s = label ?? this.request?.state ?? 'no request'
    if (this.trace[this.trace.length - 1] !== s) this.trace.push(s)
  }

  /** Resolves at the next send with the instance id (take it before causing the send). */
  nextSend(): Promise<string> {
    return this.#nextSend.promise
  }

  /** An instance appears: a waiting request goes on. */
  appear(i: Instance): void {
    this.instances.push(i)
    for (const w of this.#waiters.splice(0)) w()
  }

  close(reason: Error): void {
    this.#shutdown.abort(reason)
  }

  pick(
    _r: RequestHandler,
    exclude: ReadonlySet<string> | undefined,
    allowTried: boolean,
  ): PickResult {
    if (this.instances.length === 0) return { kind: 'queue' }
    const fresh = this.instances.find((i) => exclude?.has(i.key) !== true)
    const chosen = fresh ?? (allowTried ? this.instances[0] : undefined)
    if (chosen === undefined)
      return { kind: 'fail', error: new NoInstancesError('payments', 'all tried') }
    return { kind: 'pick', instance: chosen }
  }

  send(request: RequestHandler, i: Instance): boolean {
    request.track(this.sends.length, true)
    this.sends.push(i.id)
    this.record(`${request.state}:${i.id}`)
    const d = this.#nextSend
    this.#nextSend = deferred()
    d.resolve(i.id)
    return true
  }

  attemptEnded(_r: RequestHandler, _i: Instance, _slot: number, outcome: CallOutcome): void {
    this.outcomes.push(outcome)
  }

  observe(): void {}

  waitForInstance(service: string, signal: AbortSignal): Promise<void> {
    this.waitSignal = signal
    return new Promise<void>((resolve, reject) => {
      const timer = this.clock.setTimeout(() => {
        reject(new ResolveTimeoutError(service, RESOLVE_TIMEOUT_MS))
      }, RESOLVE_TIMEOUT_MS)
      signal.addEventListener('abort', () => {
        timer.clear()
        reject(signal.reason as Error)
      })
      this.#waiters.push(() => {
        timer.clear()
        resolve()
      })
    })
  }

  retrying(_r: RequestHandler, reason: string, delayMs: number): void {
    this.record(`retry (${reason}, ${delayMs} ms)`)
  }
}

/** The caller's legacy handler (what undici `request()` passes), recording what it sees. */
class CallerHandler {
  readonly events: string[] = []
  abort: ((err?: Error) => void) | undefined
  readonly error = deferred<Error>()
  readonly completed = deferred<undefined>()

  onConnect(abort: (err?: Error) => void): void {
    this.abort = abort
    this.events.push('connect')
  }
  onHeaders(status: number): boolean {
    this.events.push(`headers ${status}`)
    return true
  }
  onData(): boolean {
    this.events.push('data')
    return true
  }
  onComplete(): void {
    this.events.push('complete')
    this.completed.resolve(undefined)
  }
  onError(err: Error): void {
    this.events.push(`error ${err.name}`)
    this.error.resolve(err)
  }
}

function setup(opts: Partial<Dispatcher.DispatchOptions> = {}): {
  side: FakeSide
  caller: CallerHandler
  request: LegacyRequest
  /** undici's abort of the current attempt: the test answers it with onError, as undici would. */
  attemptAborts: Error[]
} {
  const side = new FakeSide()
  const caller = new CallerHandler()
  const request = new LegacyRequest(
    { origin: 'http://payments', path: '/', method: 'GET', ...opts },
    { service: 'payments' },
    side,
    caller,
  )
  side.request = request
  return { side, caller, request, attemptAborts: [] }
}

/** undici starts writing the attempt (its start callback), with an abort that records. */
function startAttempt(request: LegacyRequest, aborts: Error[]): void {
  request.onConnect((err) => {
    aborts.push(err ?? new Error('aborted'))
  })
}

/** undici delivers a whole response to the attempt. */
function respond(request: LegacyRequest, status: number, side: FakeSide): void {
  request.onHeaders(status, [], () => {}, '')
  side.record()
  request.onData(Buffer.from('x'))
  request.onComplete(null)
  side.record()
}

describe('request state machine', () => {
  it('success on the first try: connecting → sent → streaming → done', () => {
    const { side, caller, request, attemptAborts } = setup()
    side.instances = [instance('a')]
    request.start()
    startAttempt(request, attemptAborts)
    side.record()
    respond(request, 200, side)
    expect(side.trace).toEqual(['connecting:a', 'sent', 'streaming', 'done'])
    expect(caller.events).toEqual(['connect', 'headers 200', 'data', 'complete'])
    expect(side.outcomes).toEqual(['success'])
  })

  it('a connect error before sending goes at once to another instance', () => {
    const { side, caller, request, attemptAborts } = setup({ method: 'POST', body: 'once' })
    side.instances = [instance('a'), instance('b')]
    request.start()
    // No start callback: nothing was written, so even a POST may go elsewhere.
    request.onError(errorWithCode('ECONNREFUSED'))
    startAttempt(request, attemptAborts)
    side.record()
    respond(request, 200, side)
    expect(side.trace).toEqual([
      'connecting:a',
      'retry (before-send, 0 ms)',
      'connecting:b',
      'sent',
      'streaming',
      'done',
    ])
    expect(side.sends).toEqual(['a', 'b'])
    expect(side.outcomes).toEqual(['failure', 'success'])
    expect(caller.events).toEqual(['connect', 'headers 200', 'data', 'complete'])
  })

  it('no instance yet, then one appears: waiting-for-instance → connecting → … → done', async () => {
    const { side, caller, request, attemptAborts } = setup()
    request.start()
    side.record()
    // The caller got its start callback already, so that its abort reaches the wait.
    expect(caller.events).toEqual(['connect'])
    const sent = side.nextSend()
    side.appear(instance('a'))
    expect(await sent).toBe('a')
    startAttempt(request, attemptAborts)
    side.record()
    respond(request, 200, side)
    expect(side.trace).toEqual([
      'waiting-for-instance',
      'connecting:a',
      'sent',
      'streaming',
      'done',
    ])
    // One start callback per request, whatever the attempts.
    expect(caller.events).toEqual(['connect', 'headers 200', 'data', 'complete'])
  })

  it('no instance until the resolve timeout: waiting-for-instance → failed', async () => {
    const { side, caller, request } = setup()
    request.start()
    side.record()
    side.clock.advance(RESOLVE_TIMEOUT_MS)
    const err = await caller.error.promise
    side.record()
    expect(err).toBeInstanceOf(ResolveTimeoutError)
    expect(side.trace).toEqual(['waiting-for-instance', 'failed'])
    expect(side.sends).toEqual([])
    expect(side.outcomes).toEqual([])
  })

  it("the caller's abort while waiting for an instance answers at once and ends the wait", () => {
    const { side, caller, request } = setup()
    request.start()
    side.record()
    const reason = new Error('caller gave up')
    caller.abort?.(reason)
    side.record()
    expect(side.trace).toEqual(['waiting-for-instance', 'failed'])
    expect(caller.events).toEqual(['connect', 'error Error'])
    expect(side.waitSignal?.aborted).toBe(true)
    expect(side.clock.pending).toBe(0)
  })

  it("the caller's abort while streaming aborts the attempt through undici, without a retry", () => {
    const { side, caller, request, attemptAborts } = setup()
    side.instances = [instance('a'), instance('b')]
    request.start()
    startAttempt(request, attemptAborts)
    side.record()
    request.onHeaders(200, [], () => {}, '')
    side.record()
    const reason = new Error('caller gave up')
    caller.abort?.(reason)
    // The request asked undici to abort the attempt; undici answers with the error callback.
    expect(attemptAborts).toEqual([reason])
    expect(request.state).toBe('streaming')
    request.onError(reason)
    side.record()
    expect(side.trace).toEqual(['connecting:a', 'sent', 'streaming', 'failed'])
    expect(caller.events).toEqual(['connect', 'headers 200', 'error Error'])
    expect(side.sends).toEqual(['a'])
    expect(side.outcomes).toEqual(['cancelled'])
  })

  it('an error after the body was sent is not retried for a non-idempotent request', async () => {
    const { side, caller, request, attemptAborts } = setup({ method: 'POST', body: 'pay 10' })
    side.instances = [instance('a'), instance('b')]
    request.start()
    startAttempt(request, attemptAborts)
    side.record()
    request.onError(errorWithCode('ECONNRESET'))
    side.record()
    expect(side.trace).toEqual(['connecting:a', 'sent', 'failed'])
    expect(side.sends).toEqual(['a'])
    expect(side.outcomes).toEqual(['failure'])
    expect(side.clock.pending).toBe(0)
    const err = await caller.error.promise
    expect((err as Error & { code?: string }).code).toBe('ECONNRESET')
  })

  it('a retryable status is dropped, backed off on the clock, and sent to another instance', async () => {
    const { side, caller, request, attemptAborts } = setup()
    side.instances = [instance('a'), instance('b')]
    request.start()
    startAttempt(request, attemptAborts)
    side.record()
    request.onHeaders(503, [], () => {}, '')
    side.record()
    request.onData(Buffer.from('busy'))
    request.onComplete(null)
    side.record()
    expect(side.clock.pending).toBe(1)
    side.clock.advance(9)
    expect(side.sends).toEqual(['a'])
    const sent = side.nextSend()
    side.clock.advance(1)
    expect(await sent).toBe('b')
    startAttempt(request, attemptAborts)
    side.record()
    respond(request, 200, side)
    await caller.completed.promise
    expect(side.trace).toEqual([
      'connecting:a',
      'sent',
      'discarding',
      'retry (status 503, 10 ms)',
      'backoff',
      'connecting:b',
      'sent',
      'streaming',
      'done',
    ])
    // The caller never saw the 503.
    expect(caller.events).toEqual(['connect', 'headers 200', 'data', 'complete'])
    expect(side.outcomes).toEqual(['failure', 'success'])
  })

  it('closing the dispatcher during a backoff fails the request with the close reason', async () => {
    const { side, caller, request, attemptAborts } = setup()
    side.instances = [instance('a')]
    request.start()
    startAttempt(request, attemptAborts)
    request.onHeaders(502, [], () => {}, '')
    request.onComplete(null)
    side.record()
    const reason = new Error('closed')
    side.close(reason)
    side.record()
    expect(await caller.error.promise).toBe(reason)
    expect(side.trace).toEqual(['connecting:a', 'retry (status 502, 10 ms)', 'backoff', 'failed'])
    expect(side.clock.pending).toBe(0)
  })
})
