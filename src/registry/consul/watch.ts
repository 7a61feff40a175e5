/**
 * One service's watch loop: blocking queries on `/v1/health/service/<name>`, following the
 * client rules of Consul's blocking-query guide
 * (https://developer.hashicorp.com/consul/api-docs/features/blocking, docs/design/consul.md):
 * index reset when it goes backwards, never 0 after a read, content dedupe, a token bucket for
 * early answers that changed nothing, jittered backoff on errors forever, the last good set
 * kept, and a sudden empty answer confirmed by a plain read before it wipes a healthy set.
 */
import { isAborted, linkedController, sleep } from '../../core/abort.js'
import { Backoff, jitterDown } from '../../core/backoff.js'
import { systemClock, type Clock } from '../../core/clock.js'
import {
  errorMessage,
  InvalidResponseError,
  LimitExceededError,
  quote,
  RegistryUnavailableError,
  WayfindError,
  type MalformedInstanceError,
} from '../../errors.js'
import { applyAnswer } from '../answer-policy.js'
import { sameInstance, type Instance } from '../../instance.js'
import type { WatchListener } from '../provider.js'
import type { ConsulHttp, ConsulResponse } from './http.js'
import { consulDuration } from './duration.js'
import { parseConsulIndex, type ConsulIndex } from './index-header.js'
import type { IndexResets, IndexResetTarget } from './index-resets.js'
import { mapHealthEntries } from './mapping.js'
import type { ParsedConsulOptions } from './options.js'
import type { SlotGate } from './slot-gate.js'
import { TokenBucket } from './token-bucket.js'
import { debug } from '../../core/debug.js'
import { reportListenerError } from '../../core/listener-errors.js'

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

/** Raised inside the loop when another watch saw the index go below this long poll's. */
class IndexResetError extends Error {}

/** A read that came back, mapped. */
interface Reading {
  readonly index: ConsulIndex
  /** The header as received, for the error that reports a bad one. */
  readonly rawIndex: string
  /** The set to serve after this answer, per the answer policy (last good values kept). */
  readonly instances: readonly Instance[]
  /** The one error reporting this answer's malformed entries, if any. */
  readonly malformed: MalformedInstanceError | undefined
  readonly faultSignature: string
  readonly aclFiltered: boolean
}

/** A reading once applied: whether it changed the set, or undefined when held back to confirm. */
interface Answer {
  readonly reading: Reading
  readonly changed: boolean | undefined
}

export interface WatchDeps {
  readonly http: ConsulHttp
  readonly gate: SlotGate
  readonly options: ParsedConsulOptions
  /**
   * The provider's other watches: told when this one sees the index go back, and telling it
   * when one of them does ({@link ConsulServiceWatch.resetAbove}). Absent: this watch alone.
   */
  readonly resets?: IndexResets
  /**
   * Time of the churn guard (token refills, "answered early") and of the retry delays.
   * @defaultValue the system clock
   */
  readonly clock?: Clock
}

/**
 * Runs until `signal` aborts. Never calls the listener synchronously from `start()`, nor after
 * `signal` aborted, and never lets a listener exception reach the loop.
 */
export class ConsulServiceWatch implements IndexResetTarget {
  readonly #service: string
  readonly #listener: WatchListener
  readonly #signal: AbortSignal
  readonly #deps: WatchDeps
  readonly #clock: Clock
  readonly #bucket: TokenBucket
  readonly #backoff: Backoff
  /** Index for the next request; 0n means "plain read". */
  #index = 0n
  /**
   * The set last delivered (sorted by key): where malformed entries find their last good value,
   * and what content dedupe compares with.
   */
  #current: readonly Instance[] = []
  /** False until the first set went out (an empty first answer is news too). */
  #delivered = false
  /** Malformed entries last reported, so a persistent fault is not re-reported on every wake. */
  #reportedFaults = ''
  #aclWarned = false
  /** The bad `X-Consul-Index` last reported, so an agent stuck on one is reported once. */
  #indexFault: string | undefined
  /** The long poll in flight, if any: its index, and how to wake it on a provider-wide reset. */
  #poll: { readonly index: bigint; readonly epoch: number; readonly wake: () => void } | undefined
  /** The reset epoch (index-resets.ts) when the read that gave `#index` started. */
  #indexEpoch = 0
  /**
   * The index of the last answer believed, kept across errors and plain reads: any later answer
   * below it means the index went back, however this watch came to read it.
   */
  #lastIndex = 0n
  /** The latest provider-wide reset told to this watch: its epoch and lowest index. */
  #resetEpoch = 0
  #resetFloor = 0n

  constructor(service: string, listener: WatchListener, signal: AbortSignal, deps: WatchDeps) {
    this.#service = service
    this.#listener = listener
    this.#signal = signal
    this.#deps = deps
    this.#clock = deps.clock ?? systemClock
    const { rateLimit, backoff, random } = deps.options
    this.#bucket = new TokenBucket(rateLimit.burstCount, rateLimit.refillMs, this.#clock)
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
    // Whether the last answer came back early and changed nothing: only then does the next
    // request wait for a token (the churn guard, below).
    let idle = false
    while (!this.#signal.aborted) {
      try {
        if (idle) await this.#bucket.take(this.#signal)
        const startedAt = this.#clock.now()
        const requestIndex = this.#index
        let answer: Answer
        let waitMs = 0
        if (requestIndex === 0n) {
          answer = await this.#plainRead(false)
        } else {
          const r = await this.#blockingRead()
          if (r === undefined) {
            idle = false
            continue
          }
          ;[answer, waitMs] = r
        }
        const early = this.#clock.now() - startedAt < waitMs / 2 || waitMs === 0
        if (answer.changed === undefined) {
          debug(
            'consul watch %s: empty answer after %d instances, confirming',
            this.#service,
            this.#current.length,
          )
          answer = await this.#plainRead(true)
        }
        const { reading, changed } = answer
        // The churn guard. An answer well before its wait (a wake, or a server that does not
        // block) that changed nothing (an index bump with the same instances, or an index that
        // did not move) spends a token before the next request, so an agent that answers at
        // once cannot turn the loop into a busy loop. An answer that changed the set under a
        // new index costs no token: pacing it would hold every later change of a churning
        // service back by a refill, so the cache would lag the registry by seconds after a
        // burst of writes. Such a request was paid for by a write on the agent, and the next
        // one parks until the next write.
        const moved = reading.index.kind === 'ok' && reading.index.index > requestIndex
        idle = early && (changed !== true || !moved)
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
        idle = false
        const delay = error instanceof BadRequestError ? this.#slowDelay() : this.#backoff.next()
        debug('consul watch %s: %s; retrying in %d ms', this.#service, error.message, delay)
        try {
          await sleep(delay, this.#signal, this.#clock)
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
  async #plainRead(confirm: boolean): Promise<Answer> {
    const slot = await this.#deps.gate.acquire(this.#signal)
    try {
      return await this.#read(confirm)
    } finally {
      slot.release()
    }
  }

  /** A long poll holding a gate slot; undefined when it yielded its slot (retry, same index). */
  async #blockingRead(): Promise<[Answer, number] | undefined> {
    const { gate, options } = this.#deps
    const slot = await gate.acquire(this.#signal)
    const yieldController = new AbortController()
    try {
      const waitMs = gate.fairWaitMs(options.waitMs)
      slot.hold(waitMs, () => {
        yieldController.abort(new YieldedError('yield'))
      })
      this.#poll = {
        index: this.#index,
        epoch: this.#indexEpoch,
        wake: () => {
          yieldController.abort(new IndexResetError('index reset'))
        },
      }
      try {
        return [await this.#read(false, waitMs, yieldController.signal), waitMs]
      } catch (err) {
        // Neither a yield nor a reset is an error: the loop goes on (after a reset, from 0).
        if (yieldController.signal.aborted && !this.#signal.aborted) {
          const reset = yieldController.signal.reason instanceof IndexResetError
          debug('consul watch %s %s', this.#service, reset ? 'reset its index' : 'yielded its slot')
          return undefined
        }
        throw err
      }
    } finally {
      this.#poll = undefined
      slot.release()
    }
  }

  /**
   * One GET. `waitMs` set → blocking on the current index; `confirm` → plain, never stale. The
   * answer is applied ({@link ConsulServiceWatch.#accept}) as soon as its body is read.
   */
  #read(confirm: boolean, waitMs?: number, yieldSignal?: AbortSignal): Promise<Answer> {
    const requestIndex = this.#index
    const epoch = this.#deps.resets?.epoch ?? 0
    const { http, options } = this.#deps
    const query: [string, string][] = []
    if (options.passingOnly) query.push(['passing', '1'])
    // Repeated tag= is ANDed by Consul (hashicorp/consul api/health.go ServiceMultipleTags).
    for (const tag of options.tags) query.push(['tag', tag])
    if (options.filter !== undefined) query.push(['filter', options.filter])
    if (options.datacenter !== undefined) query.push(['dc', options.datacenter])
    if (options.consistency === 'consistent') query.push(['consistent', ''])
    else if (options.consistency === 'stale' && !confirm) query.push(['stale', ''])
    // A reset while this watch waited for its slot leaves index 0: that read is a plain one.
    const blocking = waitMs !== undefined && requestIndex !== 0n
    if (blocking) {
      query.push(['index', requestIndex.toString()])
      query.push(['wait', consulDuration(waitMs)])
    }
    const { controller, dispose } = linkedController(this.#signal, yieldSignal)
    return http
      .request(
        {
          method: 'GET',
          path: `/v1/health/service/${encodeURIComponent(this.#service)}`,
          service: this.#service,
          query,
          // Every watch read holds a gate slot, i.e. one of the watch lane's connections.
          lane: 'watch',
          // Consul adds up to wait/16 of jitter (agent/consul/rpc.go), so wait × 17/16 plus slack.
          timeoutMs: blocking
            ? Math.ceil((waitMs * 17) / 16) +
              Math.max(MIN_TIMEOUT_SLACK_MS, options.requestTimeoutMs)
            : options.requestTimeoutMs,
          signal: controller.signal,
        },
        // A plain read is index 0 to the rules, whatever index the loop held.
        (res) => this.#accept(this.#parse(res), blocking ? requestIndex : 0n, confirm, epoch),
      )
      .finally(dispose)
  }

  /**
   * Applies a reading the moment it is parsed: index rules, then delivery. Doing it inside the
   * HTTP call rather than back in the loop puts the change event ahead of the request's
   * bookkeeping (timer, abort listeners, gate slot, promise hops). A healthy set that is
   * suddenly empty is held back (`changed: undefined`): streaming-backend and ACL races have
   * produced spurious empty answers (docs/design/consul.md#spurious-empty-answers), so the loop
   * believes it only after a plain read.
   */
  #accept(reading: Reading, requestIndex: bigint, confirm: boolean, epoch: number): Answer {
    if (
      !confirm &&
      requestIndex !== 0n &&
      reading.instances.length === 0 &&
      this.#current.length > 0
    )
      return { reading, changed: undefined }
    this.#advanceIndex(requestIndex, reading, epoch)
    return { reading, changed: this.#deliver(reading) }
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
    if (rawIndex === undefined)
      throw new RegistryUnavailableError(
        `Consul's answer for "${this.#service}" has no X-Consul-Index header; is ${this.#deps.options.origin} a Consul agent?`,
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
    const { maxInstances } = this.#deps.options.limits
    if (body.length > maxInstances)
      throw new LimitExceededError(
        'limits.maxInstances',
        maxInstances,
        `Consul's answer for "${this.#service}" lists ${body.length} entries, over the limit`,
        { service: this.#service },
      )
    const { instances, problems } = mapHealthEntries(body, {
      service: this.#service,
      passingOnly: this.#deps.options.passingOnly,
      addressKind: this.#deps.options.addressKind,
    })
    const outcome = applyAnswer(this.#current, {
      service: this.#service,
      instances,
      faults: problems,
      entries: body.length,
    })
    return {
      index: parseConsulIndex(rawIndex),
      rawIndex,
      instances: outcome.instances,
      malformed: outcome.error,
      faultSignature: outcome.faultSignature,
      // Only an empty answer is explained by it.
      aclFiltered:
        outcome.instances.length === 0 &&
        res.header('X-Consul-Results-Filtered-By-ACLs') === 'true',
    }
  }

  /**
   * blocking.mdx "Implementation Details": reset on regression, never block on 0. A header that
   * is not an index at all (not a number, above 2^64−1) is treated like a regression: the data
   * is current, but only a fresh read re-bases the index, and the bad value is never sent back.
   */
  #advanceIndex(requestIndex: bigint, reading: Reading, readEpoch: number): void {
    const answered = reading.index
    this.#reportIndexFault(reading)
    if (answered.kind === 'invalid') {
      this.#index = 0n
      return
    }
    // "It is always safe to use an index of 1": a 0 from a buggy agent would make every query
    // return at once, and is not a regression either.
    const index = answered.kind === 'ok' ? answered.index : 1n
    if (this.#lastIndex !== 0n && index < this.#lastIndex) {
      // The index went backwards (snapshot restore, servers restarted without their data),
      // seen by a long poll or by a plain read (after an error, say). The data is current, and
      // the provider's other watches are told (index-resets.ts): some may hold old indexes.
      debug('consul watch %s: index went back from %s to %s', this.#service, this.#lastIndex, index)
      this.#deps.resets?.regressed(index, this, readEpoch)
      this.#lastIndex = index
      this.#indexEpoch = this.#deps.resets?.epoch ?? 0
      // After a long poll only a fresh read from 0 re-bases the index safely; a plain read
      // just did.
      this.#index = requestIndex === 0n ? index : 0n
      return
    }
    if (requestIndex !== 0n && index < requestIndex) {
      // Below the index sent but not below the last one believed (an index this watch was told
      // to forget): only a fresh read re-bases it.
      this.#index = 0n
      return
    }
    if (readEpoch < this.#resetEpoch && index > this.#resetFloor) {
      // Another watch reported a regression while this read was in flight, and the answer is
      // above the new index: it may have been served before the restore, so re-read from 0
      // rather than block on it.
      this.#index = 0n
      return
    }
    this.#index = index
    this.#lastIndex = index
    this.#indexEpoch = readEpoch
  }

  /**
   * Another watch of the provider saw the index go back to `to` (a snapshot restore, servers
   * restarted without their data), announced as reset `epoch`. An index above `to` read before
   * that is stale for this watch too, and Consul would keep a long poll on it parked until the
   * index passes it or the wait ends: forget it, and wake a long poll that carries one. No
   * error: the next request is a plain read, as after this watch's own regression. A watch that
   * re-based in this epoch already ignores it.
   */
  resetAbove(to: bigint, epoch: number): void {
    if (epoch > this.#resetEpoch) {
      this.#resetEpoch = epoch
      this.#resetFloor = to
    } else if (to < this.#resetFloor) this.#resetFloor = to
    if (this.#indexEpoch >= epoch) return
    // Its own next answer will be below the forgotten one: not news to announce again.
    if (this.#lastIndex > to) this.#lastIndex = 0n
    if (this.#index > to) this.#index = 0n
    const poll = this.#poll
    if (poll !== undefined && poll.index > to && poll.epoch < epoch) poll.wake()
  }

  /** A bad index is reported once per distinct value, and forgotten after a good one. */
  #reportIndexFault(reading: Reading): void {
    const answered = reading.index
    if (answered.kind === 'ok') {
      this.#indexFault = undefined
      return
    }
    if (this.#indexFault === reading.rawIndex) return
    this.#indexFault = reading.rawIndex
    this.#emitError(
      new InvalidResponseError(
        this.#service,
        answered.kind === 'zero'
          ? `Consul's answer for "${this.#service}" has X-Consul-Index 0 (indexes start at 1; an agent bug): blocking on index 1 instead`
          : `Consul's answer for "${this.#service}" has an X-Consul-Index that ${answered.reason}: ${quote(reading.rawIndex)}; the next read starts from scratch instead of sending it back`,
      ),
    )
  }

  /** Reports what the reading changed; true when the instance set did (a snapshot went out). */
  #deliver(reading: Reading): boolean {
    if (reading.faultSignature !== this.#reportedFaults && reading.malformed !== undefined)
      this.#emitError(reading.malformed)
    this.#reportedFaults = reading.faultSignature
    if (reading.aclFiltered && reading.instances.length === 0 && !this.#aclWarned) {
      this.#aclWarned = true
      this.#emitError(
        new RegistryUnavailableError(
          `Consul filtered the instances of "${this.#service}" by ACLs: the token may lack service:read`,
          { retryable: false },
        ),
      )
    }
    if (this.#delivered && sameInstances(this.#current, reading.instances)) return false
    this.#delivered = true
    this.#current = reading.instances
    if (this.#signal.aborted) return true
    try {
      this.#listener.onSnapshot({
        service: this.#service,
        instances: reading.instances,
        revision: reading.index.kind === 'ok' ? reading.index.index.toString() : '0',
      })
    } catch (err) {
      reportListenerError('A wayfind watch listener', err)
    }
    return true
  }

  #emitError(error: WayfindError): void {
    if (this.#signal.aborted) return
    try {
      this.#listener.onError(error)
    } catch (err) {
      reportListenerError('A wayfind watch listener', err)
    }
  }

  /** A 400 will not fix itself soon: retry at the backoff ceiling (jittered), not fast. */
  #slowDelay(): number {
    const { maxMs } = this.#deps.options.backoff
    return jitterDown(maxMs, 0.5, this.#deps.options.random)
  }
}

/** Consul rejected the query itself (400): surfaced, then retried slowly, never a silent stop. */
class BadRequestError extends RegistryUnavailableError {}

/**
 * Content equality of two instance lists sorted by key (as the mapping and the answer policy
 * return them). Stops at the first difference, so a change costs little to detect; only an
 * unchanged answer is walked to the end.
 */
function sameInstances(a: readonly Instance[], b: readonly Instance[]): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++)
    if (!sameInstance(a[i] as Instance, b[i] as Instance)) return false
  return true
}
