/**
 * `wf.register()`: validates the registration, hands it to the provider, tracks its state as
 * events, and deregisters exactly once, bounded in time (explicitly, on client close, on
 * SIGTERM/SIGINT or on a crash).
 */
import { abortReason, isAborted, linkedController, onAbort } from '../core/abort.js'
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
} from './registrar.js'
import { onShutdown } from './shutdown.js'

/** A live registration. Created by {@link startRegistration}. */
class LiveRegistration implements RegistrationHandle {
  readonly service: string
  readonly id: string
  readonly #hub: EventHub
  readonly #ctx = new AbortController()
  readonly #timeoutMs: number
  readonly #onEnd: () => void
  #state: RegistrationState = 'registered'
  #session: RegistrationSession | undefined
  #removeShutdown: (() => void) | undefined
  #deregistering: Promise<void> | undefined

  constructor(reg: NormalizedRegistration, hub: EventHub, timeoutMs: number, onEnd: () => void) {
    this.service = reg.name
    this.id = reg.id
    this.#hub = hub
    this.#timeoutMs = timeoutMs
    this.#onEnd = onEnd
  }

  get state(): RegistrationState {
    return this.#state
  }

  get contextSignal(): AbortSignal {
    return this.#ctx.signal
  }

  attach(session: RegistrationSession, options: ParsedRegisterOptions): void {
    this.#session = session
    if (options.handleSignals || options.handleCrashes)
      this.#removeShutdown = onShutdown({
        run: () => this.deregister().catch(() => undefined),
        timeoutMs: this.#timeoutMs,
        signals: options.handleSignals,
        crashes: options.handleCrashes,
      })
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
      await Promise.race([
        session.deregister(controller.signal),
        new Promise<never>((_, reject) => {
          onAbort(controller.signal, () => {
            reject(abortReason(controller.signal))
          })
        }),
      ])
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
): Promise<RegistrationHandle> {
  const reg = parseRegistration(input)
  const options = parseRegisterOptions(optionsInput)
  if (provider.register === undefined)
    throw new RegistrationError(
      `The "${provider.name}" registry is read-only: it cannot register services`,
    )
  if (options.signal?.aborted === true) throw abortReason(options.signal)

  let untrack: () => void = () => {}
  const handle = new LiveRegistration(reg, hub, options.shutdownTimeoutMs, () => {
    untrack()
  })
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
