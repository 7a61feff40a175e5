/**
 * One service's view of etcd: the key → instance cache kept by list-then-watch, emitted to the
 * listener as full snapshots. Malformed values follow the answer policy (answer-policy.ts): a
 * key whose new value is malformed keeps its last good instance, a listing in which every value
 * is malformed keeps the whole last good set, and each listing or event batch reports its
 * malformed values in one error.
 */
import { LimitExceededError } from '../../errors.js'
import type { Instance } from '../../instance.js'
import { malformedAnswerError, type EntryFault } from '../answer-policy.js'
import type { WatchListener } from '../provider.js'
import { prefixEnd, type WayfindEtcd3 } from './client.js'
import { decodeEntry } from './mapping.js'
import type { ParsedEtcdOptions } from './options.js'
import { runRevisionWatch } from './revision-watch.js'
import { callListener } from '../../core/listener-errors.js'

/** Starts watching `service`; everything stops when `signal` aborts. */
export function watchService(
  client: WayfindEtcd3,
  options: ParsedEtcdOptions,
  service: string,
  listener: WatchListener,
  signal: AbortSignal,
  hooks: { onWatching?: () => void; onRelist?: (why: string) => void } = {},
): Promise<void> {
  const prefix = `${options.prefix}${service}/`
  const key = Buffer.from(prefix)
  // key → last good instance (undefined while the key only ever held malformed values).
  let cache = new Map<string, Instance | undefined>()

  // Listener calls are guarded: a throwing listener must not stop the watch (contract).
  const safely = (fn: () => void): void => {
    if (!signal.aborted) callListener('A wayfind watch listener', fn)
  }

  /** Decodes `kv` into `next`; a malformed value keeps `previous`'s instance and is added to `faults`. */
  const apply = (
    next: Map<string, Instance | undefined>,
    previous: Map<string, Instance | undefined>,
    // A listed key (range-wire.ts) or an event's key (etcd3): both carry the key and value bytes.
    kv: { readonly key: Buffer; readonly value: Buffer },
    faults: EntryFault[],
  ): void => {
    const fullKey = kv.key.toString('utf8')
    const result = decodeEntry(
      options.codec,
      {
        key: fullKey,
        service,
        // The prefix ends with "/": the last segment of the key is never part of it.
        keySuffix: fullKey.slice(fullKey.lastIndexOf('/') + 1),
        value: kv.value,
      },
      options.limits.maxValueBytes,
    )
    switch (result.kind) {
      case 'instance':
        next.set(fullKey, result.instance)
        break
      case 'ignored':
        next.delete(fullKey)
        break
      case 'malformed': {
        const lastGood = previous.get(fullKey)
        next.set(fullKey, lastGood)
        faults.push({
          entry: fullKey,
          key: fullKey,
          field: 'value',
          reason:
            lastGood === undefined
              ? result.reason
              : `${result.reason} (the last good value keeps serving)`,
        })
        break
      }
    }
  }

  const report = (faults: readonly EntryFault[], keptAll = false): void => {
    const error = malformedAnswerError(service, faults, { keptAll })
    if (error !== undefined)
      safely(() => {
        listener.onError(error)
      })
  }

  // Over limits.maxInstances: reported once, and no snapshot until the service is back under it.
  let overLimit = false
  const emit = (revision: bigint): void => {
    const instances: Instance[] = []
    for (const i of cache.values()) if (i !== undefined) instances.push(i)
    const { maxInstances } = options.limits
    if (instances.length > maxInstances) {
      if (!overLimit) {
        const error = new LimitExceededError(
          'limits.maxInstances',
          maxInstances,
          `etcd lists ${instances.length} instances of "${service}", over the limit`,
          { service },
        )
        safely(() => {
          listener.onError(error)
        })
      }
      overLimit = true
      return
    }
    overLimit = false
    instances.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
    safely(() => {
      listener.onSnapshot({ service, instances, revision: revision.toString() })
    })
  }

  return runRevisionWatch(
    client,
    options,
    { key, end: prefixEnd(key) },
    {
      onList(kvs, revision) {
        // A fresh listing replaces the cache: keys absent from it are removals (the diff).
        const next = new Map<string, Instance | undefined>()
        const faults: EntryFault[] = []
        for (const kv of kvs) apply(next, cache, kv, faults)
        // Every value malformed: the listing says nothing usable, so the last good set stays.
        const keptAll =
          faults.length > 0 &&
          faults.length === kvs.length &&
          [...cache.values()].some((i) => i !== undefined)
        report(faults, keptAll)
        if (keptAll) return
        cache = next
        emit(revision)
      },
      onEvents(events, revision) {
        const faults: EntryFault[] = []
        for (const ev of events) {
          if (ev.type === 'Delete') cache.delete(ev.kv.key.toString('utf8'))
          else apply(cache, cache, ev.kv, faults)
        }
        report(faults)
        emit(revision)
      },
      onError(error) {
        safely(() => {
          listener.onError(error)
        })
      },
      ...(hooks.onWatching === undefined ? {} : { onWatching: hooks.onWatching }),
      ...(hooks.onRelist === undefined ? {} : { onRelist: hooks.onRelist }),
    },
    signal,
    `service ${JSON.stringify(service)}`,
  )
}
