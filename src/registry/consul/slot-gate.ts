/**
 * The connection budget of long polls. Every in-flight blocking query holds one connection
 * (HTTP/1.1) or one stream (HTTP/2), and Consul refuses more than 200 connections per client IP
 * (docs/design/consul.md#connection-limit). The gate hands out at most `capacity` slots; watches
 * beyond that queue in FIFO order.
 *
 * Nobody starves when more services are watched than there are slots:
 * - while oversubscribed, each long poll asks Consul for a shorter wait
 *   ({@link SlotGate.fairWaitMs}), so slots rotate and every queued watch gets a turn about every
 *   `rotationMs`; a queued watch then blocks with its last index, so a change that happened
 *   while it waited comes back at once;
 * - a poll that started with a long wait before the gate filled up is asked to yield (its
 *   request is aborted and re-queued with the same index, which loses nothing) once it has held
 *   its slot for the fair wait.
 */
import { abortReason, onAbort } from '../../core/abort.js'
import { systemClock, type Clock, type TimerHandle } from '../../core/clock.js'

/** Shortest wait we ask for while rotating: below this the agent is just polled. */
const MIN_FAIR_WAIT_MS = 1_000

/** A granted slot. */
export interface Slot {
  /** Declares how long the request holding the slot may block, so the gate can ask it to yield. */
  hold(waitMs: number, onYield: () => void): void
  /** Gives the slot back (idempotent). */
  release(): void
}

interface Holder {
  startedAt: number
  endsAt: number
  onYield: (() => void) | undefined
  timer: TimerHandle | undefined
}

interface Waiter {
  grant: (slot: Slot) => void
}

export class SlotGate {
  #capacity: number
  readonly #rotationMs: number
  readonly #clock: Clock
  readonly #holders = new Set<Holder>()
  readonly #waiters: Waiter[] = []
  /** Watches that will want a slot (running, rate-limited or backing off included). */
  #watchers = 0

  constructor(capacity: number, rotationMs: number, clock: Clock = systemClock) {
    this.#capacity = capacity
    this.#rotationMs = rotationMs
    this.#clock = clock
  }

  get capacity(): number {
    return this.#capacity
  }

  /** Changes the number of slots (e.g. once the agent is known to speak HTTP/2). */
  set capacity(value: number) {
    this.#capacity = value
    this.#grant()
  }

  /** Slots held right now. */
  get active(): number {
    return this.#holders.size
  }

  /**
   * Counts a watch in the demand (and {@link SlotGate.leave} uncounts it). Knowing the demand
   * before the watches queue lets the first polls ask for a fair wait straight away instead of
   * being made to yield (which costs a connection over HTTP/1.1).
   */
  join(): void {
    this.#watchers++
  }

  leave(): void {
    this.#watchers = Math.max(0, this.#watchers - 1)
  }

  /** Watches queued for a slot. */
  get queued(): number {
    return this.#waiters.length
  }

  /**
   * The wait a long poll should ask Consul for: `waitMs` while every watch has a slot; shorter
   * while oversubscribed, so that the queue turns over about every `rotationMs`.
   */
  fairWaitMs(waitMs: number): number {
    const demand = Math.max(this.#watchers, this.#holders.size + this.#waiters.length)
    if (demand <= this.#capacity) return waitMs
    const fair = Math.floor((this.#rotationMs * this.#capacity) / demand)
    return Math.min(waitMs, Math.max(MIN_FAIR_WAIT_MS, fair))
  }

  /** Resolves with a slot in FIFO order; rejects with the signal's reason when it aborts first. */
  acquire(signal: AbortSignal): Promise<Slot> {
    if (signal.aborted) return Promise.reject(abortReason(signal))
    if (this.#holders.size < this.#capacity && this.#waiters.length === 0)
      return Promise.resolve(this.#take())
    return new Promise<Slot>((resolve, reject) => {
      const waiter: Waiter = {
        grant: (slot) => {
          off()
          resolve(slot)
        },
      }
      const off = onAbort(signal, () => {
        const i = this.#waiters.indexOf(waiter)
        if (i >= 0) this.#waiters.splice(i, 1)
        reject(abortReason(signal))
      })
      this.#waiters.push(waiter)
      this.#askToYield()
    })
  }

  #take(): Slot {
    const holder: Holder = {
      startedAt: this.#clock.now(),
      endsAt: Infinity,
      onYield: undefined,
      timer: undefined,
    }
    this.#holders.add(holder)
    let released = false
    return {
      hold: (waitMs, onYield) => {
        holder.startedAt = this.#clock.now()
        holder.endsAt = holder.startedAt + waitMs
        holder.onYield = onYield
        if (this.#waiters.length > 0) this.#scheduleYield(holder)
      },
      release: () => {
        if (released) return
        released = true
        holder.timer?.clear()
        this.#holders.delete(holder)
        this.#grant()
      },
    }
  }

  #grant(): void {
    while (this.#holders.size < this.#capacity) {
      const next = this.#waiters.shift()
      if (next === undefined) return
      next.grant(this.#take())
    }
  }

  /** Someone is queued: every holder blocking past the fair wait yields when it reaches it. */
  #askToYield(): void {
    for (const holder of this.#holders) this.#scheduleYield(holder)
  }

  #scheduleYield(holder: Holder): void {
    if (holder.onYield === undefined || holder.timer !== undefined) return
    const fairEnd = holder.startedAt + this.fairWaitMs(Infinity)
    // Polls already within their fair share end on their own, keeping their connection.
    if (fairEnd >= holder.endsAt) return
    const onYield = holder.onYield
    holder.timer = this.#clock.setTimeout(
      () => {
        holder.timer = undefined
        holder.onYield = undefined
        if (this.#waiters.length > 0) onYield()
      },
      Math.max(0, fairEnd - this.#clock.now()),
    )
  }
}
