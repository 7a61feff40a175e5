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
import { RegistrationError, isWayfindError, errorMessage, type WayfindError } from '../errors.js'
import type { EventHub } from '../events.js'
import type { RegistryProvider } from '../registry/provider.js'
import {
  parseDeregisterOptions,
  parseRegisterOptions,
  parseRegistration,
  type ParsedRegisterOptions,
} from './options.js'
import type {
  DeregisterOptions,
  NormalizedRegistration,
  RegisterOptions,
  Registration,
  RegistrationHandle,
  RegistrationSession,
  RegistrationState,
} from './contract.js'
import { keepAlive } from '../core/keep-alive.js'
import { CLOSE_BOUND_MS, type NormalizedDrainOptions } from './drain-options.js'
import { trackServer, type ServerDrain } from './server-drain.js'
import { onShutdown, type ShutdownCause } from './shutdown.js'

/** What a registration needs from its client to drain. */
export interface DrainHost {
  /** A drain started (the client reports DOWN from now on and waits for it on close). */
  drainStarted(handle: RegistrationHandle, drain: Promise<void>): void
  /** Closes the client (watches, leases, pools): the last step of a drain on a signal. */
  close(): Promise<void>
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
    options: ParsedRegisterOptions,
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

  attach(session: RegistrationSession, options: ParsedRegisterOptions): void {
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

  deregister(input?: DeregisterOptions): Promise<void> {
    if (this.#deregistering !== undefined) return this.#deregistering
    let options: ReturnType<typeof parseDeregisterOptions>
    try {
      options = parseDeregisterOptions(input)
    } catch (err) {
      // A promise-returning method rejects; it never throws.
      return Promise.reject(err instanceof Error ? err : new Error(String(err)))
    }
    this.#deregistering = this.#deregister(options.timeoutMs ?? this.#timeoutMs, options.signal)
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
  const reg = parseRegistration(input)
  // The registry's own name rule, the one resolve() and the dispatcher apply too.
  provider.checkServiceName?.(reg.name)
  const options = parseRegisterOptions(optionsInput)
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
