/**
 * Token bucket for a watch loop. Consul's blocking-query guide asks clients to rate-limit rather
 * than sleep: quick successive deliveries pass, sustained churn falls back to a steady pace
 * (docs/design/consul.md#rate-limiting-under-churn,
 * https://developer.hashicorp.com/consul/api-docs/features/blocking).
 */
import { sleep } from '../../core/abort.js'
import { systemClock, type Clock } from '../../core/clock.js'

export class TokenBucket {
  readonly #burst: number
  readonly #refillMs: number
  readonly #clock: Clock
  #tokens: number
  #updatedAt: number

  constructor(burstCount: number, refillMs: number, clock: Clock = systemClock) {
    this.#burst = burstCount
    this.#refillMs = refillMs
    this.#clock = clock
    this.#tokens = burstCount
    this.#updatedAt = clock.now()
  }

  /** Tokens available now (fractional while refilling). */
  get tokens(): number {
    this.#refill()
    return this.#tokens
  }

  /** How long `take()` would wait now, in ms (0 when a token is available). */
  delayMs(): number {
    this.#refill()
    return this.#tokens >= 1 ? 0 : Math.ceil((1 - this.#tokens) * this.#refillMs)
  }

  /** Spends one token, waiting for it when the bucket is empty. Rejects when `signal` aborts. */
  async take(signal: AbortSignal): Promise<void> {
    const delay = this.delayMs()
    if (delay > 0) {
      await sleep(delay, signal, this.#clock)
      this.#refill()
    }
    this.#tokens = Math.max(0, this.#tokens - 1)
  }

  #refill(): void {
    const now = this.#clock.now()
    this.#tokens = Math.min(this.#burst, this.#tokens + (now - this.#updatedAt) / this.#refillMs)
    this.#updatedAt = now
  }
}
