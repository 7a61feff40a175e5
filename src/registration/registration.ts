/**
 * `wf.register()`: validates the registration, hands it to the provider, tracks its state as
 * events, and deregisters exactly once, bounded in time (explicitly, on client close, on
 * SIGTERM/SIGINT or on a crash).
 *
 * Draining (`drain()`, `wf.close()`, SIGTERM/SIGINT) is deregistration plus what a server needs
 * to lose no request: deregister → wait `drainDelayMs` so callers see the removal → stop
 * accepting and let the requests in flight finish (up to `drainTimeoutMs`, with `onDrain`
 * alongside). Every step is bounded, so the whole sequence is too.
 */
import { abortReason, isAborted, linkedController, onAbort, raceSignal } from '../core/abort.js'
import {
  checkDurationMs,
  checkInteger,
  checkKnownKeys,
  checkNonEmptyString,
  checkObject,
} from '../core/validate.js'
import {
  InvalidOptionError,
  RegistrationError,
  isWayfindError,
  errorMessage,
  type WayfindError,
} from '../errors.js'
import type { EventHub } from '../events.js'
import { instanceProblem } from '../instance.js'
import type { RegistryProvider } from '../registry/provider.js'
import type {
  NormalizedRegistration,
  RegisterOptions,
  Registration,
  RegistrationHandle,
  RegistrationSession,
  RegistrationState,
} from './contract.js'
import { DEFAULT_REGISTER_TIMEOUT_MS } from '../core/retry.js'
import { keepAlive } from '../core/keep-alive.js'
import {
  CLOSE_BOUND_MS,
  DRAIN_OPTION_KEYS,
  normalizeDrainOptions,
  type NormalizedDrainOptions,
} from './drain-options.js'
import { trackServer, type ServerDrain } from './server-drain.js'
import { onShutdown, type ShutdownCause } from './shutdown.js'

/** Default bound on deregistration. */
export const DEFAULT_SHUTDOWN_TIMEOUT_MS = 3_000

const REGISTRATION_KEYS = [
  'name',
  'id',
  'address',
  'port',
  'tags',
  'meta',
  'weight',
  'check',
] as const
const HTTP_CHECK_KEYS = ['http', 'intervalMs', 'timeoutMs', 'deregisterCriticalAfterMs'] as const
const TTL_CHECK_KEYS = ['ttlMs', 'deregisterCriticalAfterMs'] as const
const REGISTER_OPTION_KEYS = [
  'handleSignals',
  'handleCrashes',
  'shutdownTimeoutMs',
  'signal',
  'timeoutMs',
  'replace',
  ...DRAIN_OPTION_KEYS,
] as const

/** Validates a registration and applies defaults. Throws `InvalidOptionError`. */
export function normalizeRegistration(input: Registration): NormalizedRegistration {
  const reg = checkObject('registration', input)
  checkKnownKeys('', reg, REGISTRATION_KEYS)
  const name = checkNonEmptyString('name', reg.name, 'Pass the service name, e.g. "payments".')
  if (/[/\s]/.test(name))
    throw new InvalidOptionError('name', name, 'Service names cannot contain "/" or spaces.')
  const address = checkNonEmptyString(
    'address',
    reg.address,
    'Pass the address other services connect to, e.g. "10.0.0.7".',
  )
  const port = checkInteger('port', reg.port, 1, 65535)
  const id =
    reg.id === undefined
      ? `${name}-${address}-${port}`
      : checkNonEmptyString(
          'id',
          reg.id,
          'Pass a non-empty instance id, unique within the service, or leave it out.',
        )
  if (id.includes('/')) throw new InvalidOptionError('id', id, 'Instance ids cannot contain "/".')
  const tags = reg.tags ?? []
  if (!Array.isArray(tags) || tags.some((t) => typeof t !== 'string'))
    throw new InvalidOptionError('tags', reg.tags, 'Pass an array of strings.')
  const meta = checkObject('meta', reg.meta)
  for (const [k, v] of Object.entries(meta))
    if (typeof v !== 'string')
      throw new InvalidOptionError(`meta.${k}`, v, 'Meta values must be strings.')
  const weight = reg.weight === undefined ? 1 : checkInteger('weight', reg.weight, 1, 65535)
  const problem = instanceProblem({ id, service: name, host: address, port, weight })
  if (problem !== undefined)
    throw new InvalidOptionError('address', address, `Fix the registration: ${problem}.`)

  let check: NormalizedRegistration['check']
  if (reg.check !== undefined) {
    const c = checkObject('check', reg.check)
    const deregisterCriticalAfterMs =
      c.deregisterCriticalAfterMs === undefined
        ? undefined
        : checkDurationMs('check.deregisterCriticalAfterMs', c.deregisterCriticalAfterMs)
    if (c.http !== undefined && c.ttlMs !== undefined)
      throw new InvalidOptionError(
        'check',
        c,
        'Pass either { http, intervalMs } or { ttlMs }, not both.',
      )
    if (c.http !== undefined) {
      checkKnownKeys('check', c, HTTP_CHECK_KEYS)
      const http = checkNonEmptyString(
        'check.http',
        c.http,
        'Pass the health URL, e.g. "http://10.0.0.7:8080/health".',
      )
      let url: URL
      try {
        url = new URL(http)
      } catch {
        throw new InvalidOptionError(
          'check.http',
          http,
          'Pass an absolute http(s) URL, e.g. "http://10.0.0.7:8080/health".',
        )
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:')
        throw new InvalidOptionError(
          'check.http',
          http,
          'Only http: and https: health URLs can be checked.',
        )
      check = {
        kind: 'http',
        http,
        intervalMs:
          c.intervalMs === undefined
            ? 10_000
            : checkDurationMs('check.intervalMs', c.intervalMs, { min: 100 }),
        timeoutMs:
          c.timeoutMs === undefined ? 5_000 : checkDurationMs('check.timeoutMs', c.timeoutMs),
        deregisterCriticalAfterMs,
      }
    } else if (c.ttlMs !== undefined) {
      checkKnownKeys('check', c, TTL_CHECK_KEYS)
      check = {
        kind: 'ttl',
        ttlMs: checkDurationMs('check.ttlMs', c.ttlMs, { min: 1_000 }),
        deregisterCriticalAfterMs,
      }
    } else {
      checkKnownKeys('check', c, [
        'http',
        'ttlMs',
        'intervalMs',
        'timeoutMs',
        'deregisterCriticalAfterMs',
      ])
      throw new InvalidOptionError(
        'check',
        c,
        'Pass { http: url, intervalMs } for an HTTP check or { ttlMs } for a TTL check.',
      )
    }
  }
  return Object.freeze({
    name,
    id,
    address,
    port,
    tags: Object.freeze([...(tags as string[])]),
    meta: Object.freeze({ ...(meta as Record<string, string>) }),
    weight,
    check,
  })
}

/** Validated {@link RegisterOptions}. */
export interface NormalizedRegisterOptions {
  readonly handleSignals: boolean
  readonly handleCrashes: boolean
  readonly shutdownTimeoutMs: number
  readonly signal: AbortSignal | undefined
  readonly timeoutMs: number
  readonly replace: boolean
  readonly drain: NormalizedDrainOptions
}

/** What a registration needs from its client to drain. */
export interface DrainHost {
  /** A drain started (the client reports DOWN from now on and waits for it on close). */
  drainStarted(handle: RegistrationHandle, drain: Promise<void>): void
  /** Closes the client (watches, leases, pools): the last step of a drain on a signal. */
  close(): Promise<void>
}

export function normalizeRegisterOptions(
  input: RegisterOptions | undefined,
): NormalizedRegisterOptions {
  const o = checkObject('options', input)
  checkKnownKeys('options', o, REGISTER_OPTION_KEYS)
  const bool = (k: string, v: unknown, d: boolean): boolean => {
    if (v === undefined) return d
    if (typeof v !== 'boolean')
      throw new InvalidOptionError(`options.${k}`, v, 'Pass true or false.')
    return v
  }
  const handleSignals = bool('handleSignals', o.handleSignals, false)
  const signal = o.signal
  if (signal !== undefined && !(signal instanceof AbortSignal))
    throw new InvalidOptionError('options.signal', signal, 'Pass an AbortSignal.')
  return {
    handleSignals,
    handleCrashes: bool('handleCrashes', o.handleCrashes, handleSignals),
    shutdownTimeoutMs:
      o.shutdownTimeoutMs === undefined
        ? DEFAULT_SHUTDOWN_TIMEOUT_MS
        : checkDurationMs('options.shutdownTimeoutMs', o.shutdownTimeoutMs),
    signal,
    timeoutMs:
      o.timeoutMs === undefined
        ? DEFAULT_REGISTER_TIMEOUT_MS
        : checkDurationMs('options.timeoutMs', o.timeoutMs),
    replace: bool('replace', o.replace, false),
    drain: normalizeDrainOptions(o),
  }
}

/** A live registration. Created by {@link startRegistration}. */
class LiveRegistration implements RegistrationHandle {
  readonly service: string
  readonly id: string
  readonly #hub: EventHub
  readonly #ctx = new AbortController()
  readonly #timeoutMs: number
  readonly #onEnd: () => void
  readonly #drainOptions: NormalizedDrainOptions
  readonly #server: ServerDrain | undefined
  readonly #host: DrainHost | undefined
  #state: RegistrationState = 'registered'
  #session: RegistrationSession | undefined
  #removeShutdown: (() => void) | undefined
  #deregistering: Promise<void> | undefined
  #draining: Promise<void> | undefined

  constructor(
    reg: NormalizedRegistration,
    hub: EventHub,
    options: NormalizedRegisterOptions,
    onEnd: () => void,
    host: DrainHost | undefined,
  ) {
    this.service = reg.name
    this.id = reg.id
    this.#hub = hub
    this.#timeoutMs = options.shutdownTimeoutMs
    this.#onEnd = onEnd
    this.#drainOptions = options.drain
    // Tracked from now on, so that requests already in flight when draining starts are known.
    this.#server =
      options.drain.server === undefined ? undefined : trackServer(options.drain.server)
    this.#host = host
  }

  get state(): RegistrationState {
    return this.#state
  }

  get draining(): boolean {
    return this.#draining !== undefined
  }

  get contextSignal(): AbortSignal {
    return this.#ctx.signal
  }

  attach(session: RegistrationSession, options: NormalizedRegisterOptions): void {
    this.#session = session
    if (options.handleSignals || options.handleCrashes)
      this.#removeShutdown = onShutdown({
        run: (cause) => this.#onShutdown(cause),
        boundMs: (kind) =>
          kind === 'crash'
            ? this.#timeoutMs
            : this.#timeoutMs +
              this.#drainOptions.drainDelayMs +
              this.#drainOptions.drainTimeoutMs +
              CLOSE_BOUND_MS,
        signals: options.handleSignals,
        crashes: options.handleCrashes,
      })
  }

  async #onShutdown(cause: ShutdownCause): Promise<void> {
    // A crash: the process is in an unknown state; just take it out of the registry.
    if (cause.kind === 'crash') {
      await this.deregister().catch(() => undefined)
      return
    }
    await this.drain()
    // The process is about to end by the signal: close watches, leases and pools first. An
    // application with its own listener for the signal decides that itself.
    if (cause.processEnds && this.#host !== undefined) {
      let timer: NodeJS.Timeout | undefined
      await Promise.race([
        this.#host.close().catch(() => undefined),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, CLOSE_BOUND_MS)
        }),
      ])
      clearTimeout(timer)
    }
  }

  drain(): Promise<void> {
    if (this.#draining === undefined) {
      this.#draining = keepAlive.while(this.#drain())
      this.#host?.drainStarted(this, this.#draining)
    }
    return this.#draining
  }

  async #drain(): Promise<void> {
    const { drainDelayMs, drainTimeoutMs, onDrain } = this.#drainOptions
    const server = this.#server
    // Responses from now on end their keep-alive socket: callers reconnect (elsewhere).
    server?.markDraining()
    // 1. Out of the registry, so callers stop picking us (bounded by shutdownTimeoutMs).
    await this.deregister().catch(() => undefined)
    // 2. Keep serving while callers learn of the removal.
    if (drainDelayMs > 0) await new Promise<void>((resolve) => setTimeout(resolve, drainDelayMs))
    // 3. Stop accepting; the requests in flight and the application's hook finish, bounded.
    await Promise.allSettled([
      server?.close(drainTimeoutMs),
      onDrain === undefined ? undefined : boundedHook(onDrain, drainTimeoutMs, this.#hub, this),
    ])
  }

  /** Provider → state (RegisterContext.onState). */
  onState(state: Exclude<RegistrationState, 'deregistered'>, error?: WayfindError): void {
    if (this.#state === 'deregistered' || this.#ctx.signal.aborted) return
    const changed = state !== this.#state
    this.#state = state
    const event = { service: this.service, id: this.id, ...(error === undefined ? {} : { error }) }
    if (state === 'registered') {
      if (changed || this.#session === undefined) this.#hub.emit('registered', event)
    } else if (state === 'degraded') {
      if (changed) this.#hub.emit('registrationDegraded', event)
    } else {
      this.#hub.emit('registrationLost', event)
    }
  }

  deregister(
    options: { readonly timeoutMs?: number; readonly signal?: AbortSignal } = {},
  ): Promise<void> {
    this.#deregistering ??= this.#deregister(
      options.timeoutMs === undefined
        ? this.#timeoutMs
        : checkDurationMs('timeoutMs', options.timeoutMs),
      options.signal,
    )
    return this.#deregistering
  }

  async #deregister(timeoutMs: number, signal: AbortSignal | undefined): Promise<void> {
    this.#state = 'deregistered'
    this.#ctx.abort(new RegistrationError(`${this.service}/${this.id} is being deregistered`))
    this.#removeShutdown?.()
    this.#onEnd()
    const session = this.#session
    if (session === undefined) return
    await this.#end(session, timeoutMs, signal)
  }

  /** Deregistration that lost the race with a registration still in flight. */
  cleanupLate(session: RegistrationSession): Promise<void> {
    return this.#end(session, this.#timeoutMs, undefined)
  }

  async #end(
    session: RegistrationSession,
    timeoutMs: number,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    // Bounded: our own timer aborts the provider's request, and the race makes sure a provider
    // that ignores the signal cannot hold shutdown hostage either.
    const { controller, dispose } = linkedController(signal)
    const timer = setTimeout(() => {
      controller.abort(
        new RegistrationError(
          `Deregistering ${this.service}/${this.id} took longer than ${timeoutMs} ms`,
        ),
      )
    }, timeoutMs)
    timer.unref()
    try {
      await raceSignal(session.deregister(controller.signal), controller.signal)
      this.#hub.emit('deregistered', { service: this.service, id: this.id })
    } catch (err) {
      const error =
        isWayfindError(err) || signal?.aborted === true
          ? err
          : new RegistrationError(
              `Deregistering ${this.service}/${this.id} failed: ${errorMessage(err)}`,
              { cause: err },
            )
      if (isWayfindError(error)) this.#hub.emit('error', { service: this.service, error })
      throw error
    } finally {
      clearTimeout(timer)
      dispose()
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.deregister()
  }
}

/** Runs the application's `onDrain` hook, bounded; a failure becomes an `error` event. */
async function boundedHook(
  hook: () => Promise<void>,
  timeoutMs: number,
  hub: EventHub,
  reg: { readonly service: string; readonly id: string },
): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => {
      resolve('timeout')
    }, timeoutMs)
  })
  try {
    const outcome = await Promise.race([Promise.resolve().then(hook), deadline])
    if (outcome === 'timeout')
      throw new RegistrationError(
        `onDrain of ${reg.service}/${reg.id} did not finish within drainTimeoutMs (${timeoutMs} ms)`,
      )
  } catch (err) {
    const error = isWayfindError(err)
      ? err
      : new RegistrationError(`onDrain of ${reg.service}/${reg.id} failed: ${errorMessage(err)}`, {
          cause: err,
        })
    hub.emit('error', { service: reg.service, error })
  } finally {
    clearTimeout(timer)
  }
}

/**
 * Registers through `provider` and returns the live handle. `onEnd` is called when the handle
 * starts deregistering (the client forgets it then).
 */
export async function startRegistration(
  provider: RegistryProvider,
  input: Registration,
  optionsInput: RegisterOptions | undefined,
  hub: EventHub,
  track: (handle: RegistrationHandle) => () => void,
  host?: DrainHost,
): Promise<RegistrationHandle> {
  const reg = normalizeRegistration(input)
  // The registry's own name rule, the one resolve() and the dispatcher apply too.
  provider.checkServiceName?.(reg.name)
  const options = normalizeRegisterOptions(optionsInput)
  if (provider.register === undefined)
    throw new RegistrationError(
      `The "${provider.name}" registry is read-only: it cannot register services`,
    )
  if (options.signal?.aborted === true) throw abortReason(options.signal)

  let untrack: () => void = () => {}
  const handle = new LiveRegistration(
    reg,
    hub,
    options,
    () => {
      untrack()
    },
    host,
  )
  untrack = track(handle)
  const ctxSignal = handle.contextSignal
  // The caller's signal cancels a registration still in progress (not a finished one).
  const offCaller = onAbort(options.signal, () => {
    void handle.deregister().catch(() => undefined)
  })
  try {
    const session = await provider.register.call(provider, reg, {
      signal: ctxSignal,
      onState: (state, error) => {
        handle.onState(state, error)
      },
      timeoutMs: options.timeoutMs,
      replace: options.replace,
    })
    if (ctxSignal.aborted) {
      // Cancelled (or the client closed) while registering: do not leave it behind.
      await handle.cleanupLate(session).catch(() => undefined)
      throw isAborted(options.signal)
        ? abortReason(options.signal as AbortSignal)
        : abortReason(ctxSignal)
    }
    handle.attach(session, options)
    return handle
  } catch (err) {
    untrack()
    if (
      isWayfindError(err) ||
      (err instanceof Error && err.name === 'AbortError') ||
      isAborted(options.signal)
    )
      throw err
    throw new RegistrationError(`Registering ${reg.name}/${reg.id} failed: ${errorMessage(err)}`, {
      cause: err,
    })
  } finally {
    offCaller()
  }
}
