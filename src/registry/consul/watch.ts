/**
 * One service's watch loop: blocking queries on `/v1/health/service/<name>`, following the
 * client rules of Consul's blocking-query guide
 * (https://developer.hashicorp.com/consul/api-docs/features/blocking, CONSUL.md §1.4, §5):
 * index reset when it goes backwards, never 0 after a read, content dedupe, a token bucket under
 * churn, jittered backoff on errors forever, the last good set kept, and a sudden empty answer
 * confirmed by a plain read before it wipes a healthy set.
 */
import { isAborted, linkedController, sleep } from '../../core/abort.js'
import { Backoff } from '../../core/backoff.js'
import {
  errorMessage,
  RegistryUnavailableError,
  WayfindError,
  type MalformedInstanceError,
} from '../../errors.js'
import type { Instance } from '../../instance.js'
import type { WatchListener } from '../provider.js'
import type { ConsulHttp, ConsulResponse } from './http.js'
import { consulDuration } from './duration.js'
import { instancesFingerprint, mapHealthEntries } from './mapping.js'
import type { ParsedConsulOptions } from './options.js'
import type { SlotGate } from './slot-gate.js'
import { TokenBucket } from './token-bucket.js'
import { debug } from './debug.js'

/**
 * Least extra client timeout of a long poll beyond its wait and Consul's jitter. A busy agent
 * (a burst of writes, large answers) can answer well after the wait; aborting the poll then
 * throws its work away and, over HTTP/1.1, the connection too, and the retry lands on the
 * same busy agent on a new connection: with a thousand watches rotating on 1 s waits the
 * timeouts fed on themselves until no poll was answered at all (bench/many.ts). A dead agent is
 * still detected, just not within a few seconds; the last good set keeps serving meanwhile.
 */
const MIN_TIMEOUT_SLACK_MS = 30_000

/** Raised inside the loop when the gate asked a long poll to make room for a queued watch. */
class YieldedError extends Error {}

/** A read that came back, mapped. */
interface Reading {
  readonly index: bigint
  readonly instances: readonly Instance[]
  readonly problems: readonly MalformedInstanceError[]
  readonly aclFiltered: boolean
}

export interface WatchDeps {
  readonly http: ConsulHttp
  readonly gate: SlotGate
  readonly options: ParsedConsulOptions
}

/**
 * Runs until `signal` aborts. Never calls the listener synchronously from `start()`, nor after
 * `signal` aborted, and never lets a listener exception reach the loop.
 */
export class ConsulServiceWatch {
  readonly #service: string
  readonly #listener: WatchListener
  readonly #signal: AbortSignal
  readonly #deps: WatchDeps
  readonly #bucket: TokenBucket
  readonly #backoff: Backoff
  /** Index for the next request; 0n means "plain read". */
  #index = 0n
  #fingerprint: string | undefined
  #lastCount = 0
  /** Malformed entries already reported, by key → message, so a persistent one is not re-reported on every wake. */
  #reported = new Map<string, string>()
  #aclWarned = false

  constructor(service: string, listener: WatchListener, signal: AbortSignal, deps: WatchDeps) {
    this.#service = service
    this.#listener = listener
    this.#signal = signal
    this.#deps = deps
    const { rateLimit, backoff, random } = deps.options
    this.#bucket = new TokenBucket(rateLimit.burstCount, rateLimit.refillMs)
    this.#backoff = new Backoff({ initialMs: backoff.initialMs, maxMs: backoff.maxMs, random })
  }

  start(): void {
    // The first await happens before any listener call, so nothing is ever synchronous.
    void this.#run().catch((err: unknown) => {
      if (!this.#signal.aborted)
        debug('consul watch %s stopped unexpectedly: %s', this.#service, errorMessage(err))
    })
  }

  async #run(): Promise<void> {
    let early = false
    while (!this.#signal.aborted) {
      try {
        if (early) await this.#bucket.take(this.#signal)
        const startedAt = performance.now()
        let reading: Reading
        let waitMs = 0
        if (this.#index === 0n) {
          reading = await this.#plainRead(false)
        } else {
          const r = await this.#blockingRead()
          if (r === undefined) {
            early = false
            continue
          }
          ;[reading, waitMs] = r
        }
        // An answer well before its wait is a wake (or a server that does not block): it
        // spends a token, so churn cannot turn the loop into a busy loop.
        early = performance.now() - startedAt < waitMs / 2 || waitMs === 0
        const requestIndex = this.#index
        if (reading.instances.length === 0 && this.#lastCount > 0 && requestIndex !== 0n) {
          // A healthy set suddenly empty: streaming-backend and ACL races have produced
          // spurious empty answers (CONSUL.md §1.6). Believe it only after a plain read.
          debug(
            'consul watch %s: empty answer after %d instances, confirming',
            this.#service,
            this.#lastCount,
          )
          reading = await this.#plainRead(true)
        }
        this.#advanceIndex(requestIndex, reading.index)
        this.#deliver(reading)
        this.#backoff.reset()
      } catch (err) {
        if (isAborted(this.#signal)) return
        const error =
          err instanceof WayfindError
            ? err
            : new RegistryUnavailableError(
                `Consul watch of "${this.#service}" failed: ${errorMessage(err)}`,
                { cause: err },
              )
        this.#emitError(error)
        // Like Go's api/watch: after an error the next request is a plain read, so the current
        // state is delivered even if a wake-up was missed while failing.
        this.#index = 0n
        early = false
        const delay = error instanceof BadRequestError ? this.#slowDelay() : this.#backoff.next()
        debug('consul watch %s: %s; retrying in %d ms', this.#service, error.message, delay)
        try {
          await sleep(delay, this.#signal)
        } catch {
          return
        }
      }
    }
  }

  /**
   * A plain read (first read, read after an error, confirming read), holding a gate slot like a
   * long poll. Watch reads never go to the agent lane: after a registry-wide failure every watch
   * re-reads at once, and a thousand reads queued on its few connections timed out inside the
   * pool (their timer runs from the call), retried, and queued again, so the watches never
   * caught up while heartbeats queued behind them. In the gate a read waits without a timer
   * and gets its timeout only once it has a connection.
   */
  async #plainRead(confirm: boolean): Promise<Reading> {
    const slot = await this.#deps.gate.acquire(this.#signal)
    try {
      return await this.#read(confirm)
    } finally {
      slot.release()
    }
  }

  /** A long poll holding a gate slot; undefined when it yielded its slot (retry, same index). */
  async #blockingRead(): Promise<[Reading, number] | undefined> {
    const { gate, options } = this.#deps
    const slot = await gate.acquire(this.#signal)
    const yieldController = new AbortController()
    try {
      const waitMs = gate.fairWaitMs(options.waitMs)
      slot.hold(waitMs, () => {
        yieldController.abort(new YieldedError('yield'))
      })
      try {
        return [await this.#read(false, waitMs, yieldController.signal), waitMs]
      } catch (err) {
        if (yieldController.signal.aborted && !this.#signal.aborted) {
          debug('consul watch %s yielded its slot', this.#service)
          return undefined
        }
        throw err
      }
    } finally {
      slot.release()
    }
  }

  /** One GET. `waitMs` set → blocking on the current index; `confirm` → plain, never stale. */
  async #read(confirm: boolean, waitMs?: number, yieldSignal?: AbortSignal): Promise<Reading> {
    const { http, options } = this.#deps
    const query: [string, string][] = []
    if (options.passingOnly) query.push(['passing', '1'])
    // Repeated tag= is ANDed by Consul (hashicorp/consul api/health.go ServiceMultipleTags).
    for (const tag of options.tags) query.push(['tag', tag])
    if (options.filter !== undefined) query.push(['filter', options.filter])
    if (options.datacenter !== undefined) query.push(['dc', options.datacenter])
    if (options.consistency === 'consistent') query.push(['consistent', ''])
    else if (options.consistency === 'stale' && !confirm) query.push(['stale', ''])
    const blocking = waitMs !== undefined
    if (blocking) {
      query.push(['index', this.#index.toString()])
      query.push(['wait', consulDuration(waitMs)])
    }
    const { controller, dispose } = linkedController(this.#signal, yieldSignal)
    const res = await http
      .request({
        method: 'GET',
        path: `/v1/health/service/${encodeURIComponent(this.#service)}`,
        query,
        // Every watch read holds a gate slot, i.e. one of the watch lane's connections.
        lane: 'watch',
        // Consul adds up to wait/16 of jitter (agent/consul/rpc.go), so wait × 17/16 plus slack.
        timeoutMs: blocking
          ? Math.ceil((waitMs * 17) / 16) + Math.max(MIN_TIMEOUT_SLACK_MS, options.requestTimeoutMs)
          : options.requestTimeoutMs,
        signal: controller.signal,
      })
      .finally(dispose)
    return this.#parse(res)
  }

  #parse(res: ConsulResponse): Reading {
    if (res.status !== 200) {
      const body = res.text.trim().slice(0, 200)
      const what = `Consul answered ${res.status} to the health query of "${this.#service}"${body === '' ? '' : `: ${body}`}`
      if (res.status === 400)
        throw new BadRequestError(
          `${what} (check the filter, tags, dc and consistency options; retrying slowly)`,
        )
      throw new RegistryUnavailableError(what)
    }
    const rawIndex = res.header('X-Consul-Index')
    if (rawIndex === undefined || !/^\d{1,20}$/.test(rawIndex.trim()))
      throw new RegistryUnavailableError(
        `Consul's answer for "${this.#service}" has ${rawIndex === undefined ? 'no' : 'an invalid'} X-Consul-Index header; is ${this.#deps.options.origin} a Consul agent?`,
      )
    let body: unknown
    try {
      body = JSON.parse(res.text)
    } catch (err) {
      throw new RegistryUnavailableError(`Consul's answer for "${this.#service}" is not JSON`, {
        cause: err,
      })
    }
    if (!Array.isArray(body))
      throw new RegistryUnavailableError(
        `Consul's answer for "${this.#service}" is not a JSON array`,
      )
    const { instances, problems } = mapHealthEntries(body, {
      service: this.#service,
      passingOnly: this.#deps.options.passingOnly,
      addressKind: this.#deps.options.addressKind,
    })
    return {
      index: BigInt(rawIndex.trim()),
      instances,
      problems,
      aclFiltered: res.header('X-Consul-Results-Filtered-By-ACLs') === 'true',
    }
  }

  /** blocking.mdx "Implementation Details": reset on regression, never block on 0. */
  #advanceIndex(requestIndex: bigint, answered: bigint): void {
    // "It is always safe to use an index of 1": a 0 from a buggy agent would make every query
    // return at once, and is not a regression either.
    const index = answered > 0n ? answered : 1n
    if (requestIndex !== 0n && index < requestIndex) {
      // The index went backwards (snapshot restore, agent restart): the data we just got is
      // current, but only a fresh read from 0 re-bases the index safely.
      debug(
        'consul watch %s: index went back from %s to %s, resetting',
        this.#service,
        requestIndex,
        index,
      )
      this.#index = 0n
      return
    }
    this.#index = index
  }

  #deliver(reading: Reading): void {
    const current = new Map<string, string>()
    for (const p of reading.problems) {
      current.set(p.key, p.message)
      if (this.#reported.get(p.key) !== p.message) this.#emitError(p)
    }
    this.#reported = current
    if (reading.aclFiltered && reading.instances.length === 0 && !this.#aclWarned) {
      this.#aclWarned = true
      this.#emitError(
        new RegistryUnavailableError(
          `Consul filtered the instances of "${this.#service}" by ACLs: the token may lack service:read`,
          { retryable: false },
        ),
      )
    }
    const fingerprint = instancesFingerprint(reading.instances)
    if (fingerprint === this.#fingerprint) return
    this.#fingerprint = fingerprint
    this.#lastCount = reading.instances.length
    if (this.#signal.aborted) return
    try {
      this.#listener.onSnapshot({
        service: this.#service,
        instances: reading.instances,
        revision: reading.index.toString(),
      })
    } catch (err) {
      reportListenerError(err)
    }
  }

  #emitError(error: WayfindError): void {
    if (this.#signal.aborted) return
    try {
      this.#listener.onError(error)
    } catch (err) {
      reportListenerError(err)
    }
  }

  /** A 400 will not fix itself soon: retry at the backoff ceiling (jittered), not fast. */
  #slowDelay(): number {
    const { maxMs } = this.#deps.options.backoff
    return Math.round(maxMs * (1 - 0.5 * this.#deps.options.random()))
  }
}

/** Consul rejected the query itself (400): surfaced, then retried slowly, never a silent stop. */
class BadRequestError extends RegistryUnavailableError {}

function reportListenerError(err: unknown): void {
  process.emitWarning(`A wayfind watch listener threw: ${errorMessage(err)}`, {
    code: 'WAYFIND_LISTENER_ERROR',
  })
}
