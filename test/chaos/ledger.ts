/**
 * The chaos suite's accounting of `change` events. It keeps, per service, the state the cache
 * has *announced* (each event's diff applied to the previous announcement) and counts what goes
 * wrong, with these definitions:
 *
 * - **lost**: at the end, an instance whose final state in the registry (present with some
 *   content, or absent) the cache never announced: after the convergence deadline, every key
 *   where the announced state and the registry's truth differ counts once.
 * - **duplicate**: the same change announced twice: `added` for a key already announced with
 *   that content, `removed` for a key already announced absent, `updated` to the content
 *   already announced.
 * - **no-op**: a `change` event whose `added`, `removed` and `updated` are all empty.
 * - **inconsistent**: an event that contradicts itself or the previous one: `added` for a key
 *   already present with other content, `updated` for an absent key, or an `instances` list that
 *   is not the previous announcement with the diff applied.
 *
 * Intermediate states may be skipped (the cache coalesces bursts); only the final one must be
 * announced.
 */
import type { ChangeEvent, WayfindEventsApi } from '../../src/events.js'
import type { Instance } from '../../src/instance.js'

/** What the registry holds for one instance, in a form both sides can produce. */
export interface TruthInstance {
  readonly key: string
  readonly host: string
  readonly port: number
  readonly tags: readonly string[]
  readonly meta: Readonly<Record<string, string>>
  readonly weight: number
}

/** Canonical content of an instance (key excluded): equal strings mean equal content. */
export function canonical(i: Omit<TruthInstance, 'key'>): string {
  const meta = Object.entries(i.meta).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  return JSON.stringify([i.host, i.port, i.tags, meta, i.weight])
}

function instanceContent(i: Instance): string {
  // Status is not part of the registry truth we compare: the suites watch passing instances only.
  return canonical(i)
}

export interface LedgerCounts {
  readonly events: number
  readonly duplicate: number
  readonly noop: number
  readonly inconsistent: number
  /** First few problems, described, for the failure message. */
  readonly problems: readonly string[]
}

const MAX_PROBLEMS = 20

export class ChangeLedger {
  readonly #announced = new Map<string, Map<string, string>>()
  readonly #listeners = new Set<() => void>()
  readonly #off: () => void
  #events = 0
  #duplicate = 0
  #noop = 0
  #inconsistent = 0
  readonly #problems: string[] = []

  constructor(events: WayfindEventsApi) {
    this.#off = events.on('change', (e) => {
      this.#record(e)
    })
  }

  counts(): LedgerCounts {
    return {
      events: this.#events,
      duplicate: this.#duplicate,
      noop: this.#noop,
      inconsistent: this.#inconsistent,
      problems: [...this.#problems],
    }
  }

  /** The announced state of `service`: key → canonical content. */
  announced(service: string): ReadonlyMap<string, string> {
    return this.#announced.get(service) ?? new Map()
  }

  /** Keys where the announced state and `truth` differ (the would-be lost ones), described. */
  differences(service: string, truth: readonly TruthInstance[]): string[] {
    const announced = this.announced(service)
    const want = new Map(truth.map((t) => [t.key, canonical(t)]))
    const out: string[] = []
    for (const [key, content] of want) {
      const got = announced.get(key)
      if (got === undefined) out.push(`${service}: ${key} present in the registry, never announced`)
      else if (got !== content)
        out.push(`${service}: ${key} is ${content} in the registry, announced as ${got}`)
    }
    for (const key of announced.keys())
      if (!want.has(key)) out.push(`${service}: ${key} gone from the registry, never announced`)
    return out
  }

  /** Calls `listener` after every recorded event; returns the unsubscribe function. */
  onRecord(listener: () => void): () => void {
    this.#listeners.add(listener)
    return () => {
      this.#listeners.delete(listener)
    }
  }

  close(): void {
    this.#off()
    this.#listeners.clear()
  }

  #problem(text: string): void {
    if (this.#problems.length < MAX_PROBLEMS) this.#problems.push(text)
  }

  #record(e: ChangeEvent): void {
    this.#events++
    let state = this.#announced.get(e.service)
    if (state === undefined) this.#announced.set(e.service, (state = new Map()))
    if (e.added.length === 0 && e.removed.length === 0 && e.updated.length === 0) {
      this.#noop++
      this.#problem(`${e.service}: no-op change event (event #${this.#events})`)
    }
    for (const i of e.removed) {
      if (!state.delete(i.key)) {
        this.#duplicate++
        this.#problem(`${e.service}: ${i.key} removed twice`)
      }
    }
    for (const i of e.added) {
      const content = instanceContent(i)
      const prev = state.get(i.key)
      if (prev === content) {
        this.#duplicate++
        this.#problem(`${e.service}: ${i.key} added twice with the same content`)
      } else if (prev !== undefined) {
        this.#inconsistent++
        this.#problem(`${e.service}: ${i.key} added while present with other content`)
      }
      state.set(i.key, content)
    }
    for (const i of e.updated) {
      const content = instanceContent(i)
      const prev = state.get(i.key)
      if (prev === undefined) {
        this.#inconsistent++
        this.#problem(`${e.service}: ${i.key} updated while absent`)
      } else if (prev === content) {
        this.#duplicate++
        this.#problem(`${e.service}: ${i.key} updated to the content it already had`)
      }
      state.set(i.key, content)
    }
    // The event's full list must be exactly the previous announcement with the diff applied.
    const listed = new Map(e.instances.map((i) => [i.key, instanceContent(i)]))
    const same = listed.size === state.size && [...listed].every(([k, v]) => state.get(k) === v)
    if (!same) {
      this.#inconsistent++
      this.#problem(`${e.service}: event #${this.#events} lists a set its diff does not produce`)
      // Follow the event's own list from here, so one bad event is counted once.
      this.#announced.set(e.service, listed)
    }
    for (const l of this.#listeners) l()
  }
}
