/**
 * Agent-side registration (docs/design/consul.md#agent-registration):
 * `PUT /v1/agent/service/register` with an HTTP or TTL check, TTL heartbeats every TTL/3 on their
 * own timer, re-registration when the agent forgot us, and a deregistration that treats "already
 * gone" as success.
 *
 * Written on our own undici layer rather than the `consul` package: its `agent.service.register`
 * drops `Weights` and passes a numeric `ttl` through as nanoseconds, its requests cannot be
 * bounded by an AbortSignal (only an EventEmitter "ctx") and use non-unref'd timers, and it
 * would open its own sockets outside our connection budget.
 */
import { randomUUID } from 'node:crypto'
import { isAborted, linkedController, sleep } from '../../core/abort.js'
import { Backoff } from '../../core/backoff.js'
import { DEFAULT_REGISTER_TIMEOUT_MS, retryWithin } from '../../core/retry.js'
import {
  errorMessage,
  InvalidOptionError,
  LeaseLostError,
  RegistrationConflictError,
  RegistrationError,
  WayfindError,
} from '../../errors.js'
import type {
  NormalizedRegistration,
  RegisterContext,
  RegistrationSession,
} from '../../registration/contract.js'
import { debug } from '../../core/debug.js'
import { callListener } from '../../core/listener-errors.js'
import { consulDuration } from './duration.js'
import type { ConsulHttp, ConsulResponse } from './http.js'
import type { ParsedConsulOptions } from './options.js'

export interface RegistrarDeps {
  readonly http: ConsulHttp
  readonly options: ParsedConsulOptions
  /** The provider's signal: closing the provider stops every loop. */
  readonly signal: AbortSignal
}

/**
 * Service `Meta` key holding a random token per registration: Consul's agent API has no
 * compare-and-set, so this mark is how a registrar tells its own entry from one another process
 * registered under the same id. Read back before every heartbeat and before deregistering.
 */
export const OWNER_META_KEY = 'wayfind-owner'

/** Consul rejects these as "Invalid service address" (agent_endpoint.go). */
const WILDCARDS = new Set(['0.0.0.0', '::', '[::]'])

/** Path segment escape: `/` must be escaped or the agent answers 301 (hashicorp/consul#4992). */
export function escapeId(id: string): string {
  return encodeURIComponent(id).replace(/%3A/gi, ':')
}

/** The agent's default check ID, made explicit so heartbeats know it (agent.go addServiceInternal). */
export function checkIdOf(reg: NormalizedRegistration): string {
  return `service:${reg.id}`
}

/**
 * Throws `InvalidOptionError` (naming the field) for anything Consul would reject or silently
 * change. Runs before any request.
 */
export function validateConsulRegistration(reg: NormalizedRegistration): void {
  if (reg.name === '' || /[/?#]/.test(reg.name))
    throw new InvalidOptionError('name', reg.name, 'Use a service name without "/", "?" or "#".')
  if (reg.id === '') throw new InvalidOptionError('id', reg.id, 'Pass a non-empty instance id.')
  if (WILDCARDS.has(reg.address))
    throw new InvalidOptionError(
      'address',
      reg.address,
      'Register the address other services should dial, not a wildcard (Consul answers 400 "Invalid service address").',
    )
  if (!Number.isInteger(reg.weight) || reg.weight < 1)
    throw new InvalidOptionError('weight', reg.weight, 'Consul weights are whole numbers ≥ 1.')
  if (OWNER_META_KEY in reg.meta)
    throw new InvalidOptionError(
      `meta.${OWNER_META_KEY}`,
      reg.meta[OWNER_META_KEY],
      `"${OWNER_META_KEY}" is reserved: wayfind stores its ownership mark there.`,
    )
  for (const [key, value] of Object.entries(reg.meta)) {
    // agent/structs ValidateServiceMetadata: key charset and length, reserved prefix, value length.
    if (!/^[A-Za-z0-9_-]{1,128}$/.test(key) || key.startsWith('consul-'))
      throw new InvalidOptionError(
        `meta.${key}`,
        key,
        'Consul meta keys are 1–128 letters, digits, "_" or "-", and may not start with "consul-".',
      )
    if (value.length > 512)
      throw new InvalidOptionError(
        `meta.${key}`,
        value,
        'Consul meta values are at most 512 characters.',
      )
  }
  const check = reg.check
  if (check === undefined) return
  if (
    check.deregisterCriticalAfterMs !== undefined &&
    !(Number.isFinite(check.deregisterCriticalAfterMs) && check.deregisterCriticalAfterMs >= 60_000)
  )
    throw new InvalidOptionError(
      'check.deregisterCriticalAfterMs',
      check.deregisterCriticalAfterMs,
      "Consul's minimum is 60_000 (1 min); smaller values are silently raised by the agent.",
    )
  if (check.kind === 'http') {
    let url: URL | undefined
    try {
      url = new URL(check.http)
    } catch {
      url = undefined
    }
    if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:'))
      throw new InvalidOptionError(
        'check.http',
        check.http,
        'Pass the absolute http(s) URL the agent should GET.',
      )
    if (!Number.isFinite(check.intervalMs) || check.intervalMs < 1_000)
      throw new InvalidOptionError(
        'check.intervalMs',
        check.intervalMs,
        "Consul's minimum HTTP check interval is 1_000 ms.",
      )
    if (!Number.isFinite(check.timeoutMs) || check.timeoutMs < 1)
      throw new InvalidOptionError(
        'check.timeoutMs',
        check.timeoutMs,
        'Pass a positive number of milliseconds.',
      )
  } else if (!Number.isFinite(check.ttlMs) || check.ttlMs < 1_000) {
    throw new InvalidOptionError(
      'check.ttlMs',
      check.ttlMs,
      'Pass a TTL of at least 1_000 ms (heartbeats go every TTL/3).',
    )
  }
}

/**
 * The `PUT /v1/agent/service/register` body. Every duration is a string with a unit
 * (docs/design/consul.md#durations).
 */
export function registrationBody(
  reg: NormalizedRegistration,
  owner?: string,
): Record<string, unknown> {
  const body: Record<string, unknown> = {
    ID: reg.id,
    Name: reg.name,
    Address: reg.address,
    Port: reg.port,
    Tags: [...reg.tags],
    Meta: owner === undefined ? { ...reg.meta } : { ...reg.meta, [OWNER_META_KEY]: owner },
    Weights: { Passing: reg.weight, Warning: 1 },
  }
  const check = reg.check
  if (check === undefined) return body
  const common = {
    CheckID: checkIdOf(reg),
    Name: `Service '${reg.name}' check`,
    ...(check.deregisterCriticalAfterMs === undefined
      ? {}
      : { DeregisterCriticalServiceAfter: consulDuration(check.deregisterCriticalAfterMs) }),
  }
  body.Check =
    check.kind === 'http'
      ? {
          ...common,
          HTTP: check.http,
          Interval: consulDuration(check.intervalMs),
          Timeout: consulDuration(check.timeoutMs),
        }
      : { ...common, TTL: consulDuration(check.ttlMs) }
  return body
}

/** Registers `reg` and keeps it registered until `ctx.signal` (or the provider) aborts. */
export async function registerWithConsul(
  reg: NormalizedRegistration,
  ctx: RegisterContext,
  deps: RegistrarDeps,
): Promise<RegistrationSession> {
  validateConsulRegistration(reg)
  const { controller, dispose } = linkedController(ctx.signal, deps.signal)
  const agent = new AgentRegistration(reg, ctx, deps, controller.signal)
  try {
    await agent.registerFirst()
  } catch (err) {
    dispose()
    throw err
  }
  void agent.keepAlive().finally(dispose)
  return { deregister: (signal) => agent.deregister(signal) }
}

class AgentRegistration {
  readonly #reg: NormalizedRegistration
  readonly #ctx: RegisterContext
  readonly #deps: RegistrarDeps
  readonly #signal: AbortSignal
  readonly #backoff: Backoff
  /** Our ownership mark (`Meta[OWNER_META_KEY]`), new for each registration. */
  readonly #owner = randomUUID()
  #state: 'new' | 'registered' | 'degraded' | 'lost' = 'new'

  constructor(
    reg: NormalizedRegistration,
    ctx: RegisterContext,
    deps: RegistrarDeps,
    signal: AbortSignal,
  ) {
    this.#reg = reg
    this.#ctx = ctx
    this.#deps = deps
    this.#signal = signal
    this.#backoff = new Backoff({
      initialMs: deps.options.backoff.initialMs,
      maxMs: deps.options.backoff.maxMs,
      random: deps.options.random,
    })
  }

  /** Retries transient failures (unreachable, 5xx, timeouts) with backoff for ctx.timeoutMs. */
  async registerFirst(): Promise<void> {
    await retryWithin(
      () => this.#register(true),
      {
        timeoutMs: this.#ctx.timeoutMs ?? DEFAULT_REGISTER_TIMEOUT_MS,
        backoff: this.#backoff,
        signal: this.#signal,
        retryable: (err) => err instanceof WayfindError && err.retryable,
        onRetry: (err, attempt, delayMs) => {
          debug(
            'consul registration %s: attempt %d failed (%s); next in %d ms',
            this.#reg.id,
            attempt,
            errorMessage(err),
            delayMs,
          )
        },
      },
      ({ error, attempts, elapsedMs }) =>
        new RegistrationError(
          `Registering "${this.#reg.id}" with Consul failed after ${attempts} attempts in ${Math.round(elapsedMs)} ms: ${errorMessage(error)}`,
          { cause: error, retryable: true },
        ),
    )
    this.#backoff.reset()
    this.#setState('registered')
  }

  /** Heartbeats (TTL) or presence checks (other checks), until the signal aborts. */
  async keepAlive(): Promise<void> {
    const check = this.#reg.check
    const ttl = check?.kind === 'ttl'
    const periodMs = ttl ? check.ttlMs / 3 : this.#deps.options.reconcileIntervalMs
    while (!this.#signal.aborted) {
      try {
        await sleep(
          this.#state === 'registered' ? periodMs : Math.min(periodMs, this.#backoff.next()),
          this.#signal,
        )
        // A heartbeat (TTL) or a read of our entry (other checks) tells whether the agent forgot
        // us; then the ownership mark tells whether another process took the id over, in which
        // case we stop: renewing would fight the new owner.
        const forgotten = ttl ? await this.#heartbeat() : undefined
        const holder = forgotten === undefined ? await this.#holder() : undefined
        if (holder?.kind === 'other') {
          this.#setState(
            'lost',
            new RegistrationConflictError(
              this.#reg.name,
              this.#reg.id,
              `another owner (${holder.describe}) took this instance id over; this registration stopped and will not remove it`,
            ),
          )
          return
        }
        const why = forgotten ?? (holder?.kind === 'absent' ? holder.why : undefined)
        if (why !== undefined) {
          this.#setState(
            'lost',
            new LeaseLostError(
              `The Consul agent forgot service "${this.#reg.name}" instance "${this.#reg.id}" (${why}); registering again`,
            ),
          )
          await this.#register(false)
        }
        this.#backoff.reset()
        this.#setState('registered')
      } catch (err) {
        if (isAborted(this.#signal)) return
        if (err instanceof RegistrationConflictError) {
          this.#setState('lost', err)
          return
        }
        const error =
          err instanceof WayfindError
            ? err
            : new RegistrationError(
                `Keeping "${this.#reg.id}" registered failed: ${errorMessage(err)}`,
                { cause: err, retryable: true },
              )
        debug('consul registration %s: %s', this.#reg.id, error.message)
        // Lost stays lost until a registration succeeds; otherwise the agent may still list us.
        this.#setState(this.#state === 'lost' ? 'lost' : 'degraded', error)
      }
    }
  }

  async deregister(signal: AbortSignal): Promise<void> {
    // Only our own entry: after a takeover the id belongs to the new owner. (The agent has no
    // conditional deregister; the read-then-delete window is one round trip on the local agent.)
    const holder = await this.#holder(signal)
    if (holder.kind !== 'ours') return
    const res = await this.#request(
      'PUT',
      `/v1/agent/service/deregister/${escapeId(this.#reg.id)}`,
      undefined,
      signal,
    )
    // 404 "Unknown service ID" on current agents, 200 on old ones: gone either way
    // (docs/design/consul.md#deregistration).
    if (res.status === 200 || res.status === 404) return
    throw new RegistrationError(
      `Consul refused to deregister "${this.#reg.id}": ${describe(res)}`,
      { retryable: res.status >= 500 },
    )
  }

  async #register(first: boolean): Promise<void> {
    const holder = await this.#holder()
    if (holder.kind === 'other') {
      const refusal = await this.#takeoverRefusal(holder, first)
      if (refusal !== undefined)
        throw new RegistrationConflictError(this.#reg.name, this.#reg.id, refusal)
    }
    const res = await this.#request(
      'PUT',
      '/v1/agent/service/register',
      registrationBody(this.#reg, this.#owner),
      this.#signal,
      [['replace-existing-checks', 'true']],
    )
    if (res.status !== 200)
      throw new RegistrationError(
        `Consul refused to register "${this.#reg.id}": ${describe(res)}`,
        { retryable: transientStatus(res.status) },
      )
    // The agent has no compare-and-set: a registrar racing us may have written between our read
    // and our write. Read the mark back; whoever's mark stayed owns the id. (A write landing
    // after this read is noticed by the loser at its next heartbeat or anti-entropy round.)
    const after = await this.#holder()
    if (after.kind === 'other')
      throw new RegistrationConflictError(
        this.#reg.name,
        this.#reg.id,
        `another owner (${after.describe}) registered this instance id at the same time and won`,
      )
    // A TTL check starts critical (agent.go); pass at once so the instance is routable now.
    if (this.#reg.check?.kind === 'ttl') {
      const forgotten = await this.#heartbeat()
      if (forgotten !== undefined)
        throw new RegistrationError(
          `The agent lost the TTL check of "${this.#reg.id}" right after registering it (${forgotten})`,
          { retryable: true },
        )
    }
    if (this.#deps.options.verifyRegistration) await this.#verify()
  }

  /** `pass` on the TTL check. Returns why the agent forgot us, or undefined when it did not. */
  async #heartbeat(): Promise<string | undefined> {
    const check = this.#reg.check
    // A heartbeat that hangs longer than its period would let the TTL run out unnoticed.
    const timeoutMs =
      check?.kind === 'ttl'
        ? Math.min(this.#deps.options.requestTimeoutMs, Math.max(1_000, check.ttlMs / 3))
        : undefined
    const res = await this.#request(
      'PUT',
      `/v1/agent/check/pass/${escapeId(checkIdOf(this.#reg))}`,
      undefined,
      this.#signal,
      undefined,
      timeoutMs,
    )
    if (res.status === 200) return undefined
    // Current agents: 404 "Unknown check ID"; older ones: 500 "does not have associated TTL"
    // (docs/design/consul.md#ttl-heartbeats-and-re-registration; spring-cloud-consul PR #691
    // re-registers on exactly these).
    if (
      res.status === 404 ||
      (res.status === 500 && res.text.includes('does not have associated TTL'))
    )
      return describe(res)
    throw new RegistrationError(`TTL heartbeat of "${this.#reg.id}" failed: ${describe(res)}`, {
      retryable: true,
    })
  }

  /** Whether the agent still lists the service; returns why not, or undefined. */
  async #isForgotten(): Promise<string | undefined> {
    const holder = await this.#holder()
    return holder.kind === 'absent' ? holder.why : undefined
  }

  /** Who holds our service id on the agent: nobody, us (our mark), or another owner. */
  async #holder(signal: AbortSignal = this.#signal): Promise<Holder> {
    const res = await this.#request(
      'GET',
      `/v1/agent/service/${escapeId(this.#reg.id)}`,
      undefined,
      signal,
    )
    if (res.status === 404) return { kind: 'absent', why: describe(res) }
    if (res.status !== 200)
      throw new RegistrationError(
        `Checking the registration of "${this.#reg.id}" failed: ${describe(res)}`,
        { retryable: transientStatus(res.status) },
      )
    let service: { Meta?: Record<string, unknown>; Address?: unknown; Port?: unknown } = {}
    try {
      service = JSON.parse(res.text) as typeof service
    } catch {
      // An unreadable answer is treated as an unmarked entry.
    }
    const mark = service.Meta?.[OWNER_META_KEY]
    if (mark === this.#owner) return { kind: 'ours' }
    const endpoint = `${String(service.Address)}:${String(service.Port)}`
    return {
      kind: 'other',
      marked: typeof mark === 'string',
      sameEndpoint: service.Address === this.#reg.address && service.Port === this.#reg.port,
      describe: typeof mark === 'string' ? `${endpoint}, owner ${mark.slice(0, 8)}` : endpoint,
    }
  }

  /**
   * Why an entry held by someone else may not be taken over, or undefined when it may. On the
   * first registration an entry may be replaced when the caller asked, when it advertises our
   * own address and port (an earlier run of this endpoint, e.g. after a crash), when it carries
   * no ownership mark (written by something that does not guard ownership, such as an older
   * wayfind: refusing it would block upgrades), or when every one of its checks is critical (its
   * owner stopped renewing it: a crashed process). Later, only our own entry is ours.
   */
  async #takeoverRefusal(
    holder: Extract<Holder, { kind: 'other' }>,
    first: boolean,
  ): Promise<string | undefined> {
    if (!first)
      return `another owner (${holder.describe}) registered this instance id while ours was being renewed; this registration stopped and will not remove it`
    if (this.#ctx.replace === true || holder.sameEndpoint || !holder.marked) return undefined
    const statuses = await this.#checkStatuses()
    if (statuses.length > 0 && statuses.every((s) => s === 'critical')) return undefined
    return `another live owner (${holder.describe}) holds this instance id on this agent; it is released when that owner deregisters or all its checks turn critical. Pass { replace: true } to take it over`
  }

  /** Status of every check of our service id on the agent. */
  async #checkStatuses(): Promise<string[]> {
    const res = await this.#request('GET', '/v1/agent/checks', undefined, this.#signal)
    if (res.status !== 200)
      throw new RegistrationError(
        `Reading the checks of "${this.#reg.id}" failed: ${describe(res)}`,
        { retryable: transientStatus(res.status) },
      )
    const checks = JSON.parse(res.text) as Record<string, { ServiceID?: unknown; Status?: unknown }>
    return Object.values(checks)
      .filter((c) => c.ServiceID === this.#reg.id)
      .map((c) => String(c.Status))
  }

  /** A 200 on register is not proof: wait (bounded) until the agent lists the instance. */
  async #verify(): Promise<void> {
    const deadline = performance.now() + this.#deps.options.requestTimeoutMs
    const backoff = new Backoff({ initialMs: 50, maxMs: 1_000, random: this.#deps.options.random })
    for (;;) {
      const missing = await this.#isForgotten()
      if (missing === undefined) return
      if (performance.now() > deadline)
        throw new RegistrationError(
          `The Consul agent accepted "${this.#reg.id}" but does not list it (${missing})`,
          { retryable: true },
        )
      await sleep(backoff.next(), this.#signal)
    }
  }

  async #request(
    method: 'GET' | 'PUT',
    path: string,
    body: unknown,
    signal: AbortSignal,
    query?: [string, string][],
    timeoutMs?: number,
  ): Promise<ConsulResponse> {
    return this.#deps.http
      .request({
        method,
        path,
        ...(query === undefined ? {} : { query }),
        ...(body === undefined ? {} : { body }),
        lane: 'agent',
        timeoutMs: timeoutMs ?? this.#deps.options.requestTimeoutMs,
        signal,
      })
      .catch((err: unknown) => {
        if (signal.aborted || !(err instanceof WayfindError)) throw err
        throw new RegistrationError(`${method} ${path} for "${this.#reg.id}": ${err.message}`, {
          cause: err,
          retryable: true,
        })
      })
  }

  #setState(state: 'registered' | 'degraded' | 'lost', error?: WayfindError): void {
    if (this.#signal.aborted) return
    if (state === this.#state && state === 'registered' && error === undefined) return
    this.#state = state
    callListener('A wayfind registration state listener', () => {
      this.#ctx.onState(state, error)
    })
  }
}

/** Who holds a service id on the agent. */
type Holder =
  | { readonly kind: 'absent'; readonly why: string }
  | { readonly kind: 'ours' }
  | {
      readonly kind: 'other'
      /** Carries a wayfind ownership mark (another wayfind registration). */
      readonly marked: boolean
      /** Advertises our address and port. */
      readonly sameEndpoint: boolean
      readonly describe: string
    }

/** Statuses worth retrying: the agent or its servers were overloaded or unavailable. */
function transientStatus(status: number): boolean {
  return status >= 500 || status === 429
}

function describe(res: ConsulResponse): string {
  const body = res.text.trim().slice(0, 200)
  return `HTTP ${res.status}${body === '' ? '' : ` ${body}`}`
}
