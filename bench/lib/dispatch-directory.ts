/**
 * A static ServiceDirectory for benchmarks: fixed instances per service, pickers built by a
 * real strategy over a real DefaultLoadTracker, no registry. Isolates the dispatcher's cost.
 */
import { DefaultLoadTracker } from '../../src/balancer/load-tracker.js'
import { EMPTY_PICKER, type Picker, type Strategy } from '../../src/balancer/strategy.js'
import { systemClock, type Clock } from '../../src/core/clock.js'
import type { ServiceDirectory } from '../../src/core/directory.js'
import type { ChangeEvent } from '../../src/events.js'
import type { Instance } from '../../src/instance.js'

export class StaticDirectory implements ServiceDirectory {
  readonly load = new DefaultLoadTracker()
  readonly clock: Clock = systemClock
  readonly resolveTimeoutMs = 1_000
  readonly #pickers = new Map<string, Picker>()

  constructor(strategy: Strategy, services: Readonly<Record<string, readonly Instance[]>>) {
    for (const [service, instances] of Object.entries(services))
      this.#pickers.set(
        service,
        strategy.createPicker(instances, {
          service,
          load: this.load,
          random: Math.random,
          clock: this.clock,
          previous: undefined,
        }),
      )
  }

  picker(service: string): Picker {
    return this.#pickers.get(service) ?? EMPTY_PICKER
  }

  waitForPicker(service: string): Promise<Picker> {
    return Promise.resolve(this.picker(service))
  }

  onChange(_listener: (e: ChangeEvent) => void): () => void {
    return () => undefined
  }
}
