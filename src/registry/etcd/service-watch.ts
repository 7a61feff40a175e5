/**
 * One service's view of etcd: the key → instance cache kept by list-then-watch, emitted to the
 * listener as full snapshots. A key whose new value is malformed keeps its last good instance
 * (and the problem is reported), so one bad write never takes a healthy instance away.
 */
import type { IKeyValue } from 'etcd3'
import { MalformedInstanceError } from '../../errors.js'
import type { Instance } from '../../instance.js'
import type { WatchListener } from '../provider.js'
import { debug, prefixEnd, type WayfindEtcd3 } from './client.js'
import { decodeEntry } from './mapping.js'
import type { ParsedEtcdOptions } from './options.js'
import { runRevisionWatch } from './revision-watch.js'

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
    if (signal.aborted) return
    try {
      fn()
    } catch (err) {
      debug('listener of %s threw: %s', service, err instanceof Error ? err.message : String(err))
    }
  }

  const apply = (
    next: Map<string, Instance | undefined>,
    previous: Map<string, Instance | undefined>,
    kv: IKeyValue,
  ): void => {
    const fullKey = kv.key.toString('utf8')
    const suffix = fullKey.slice(prefix.length)
    const result = decodeEntry(options.codec, {
      key: fullKey,
      service,
      keySuffix: suffix.slice(suffix.lastIndexOf('/') + 1),
      value: kv.value,
    })
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
        const error = new MalformedInstanceError(
          fullKey,
          lastGood === undefined
            ? result.reason
            : `${result.reason} (the last good value keeps serving)`,
        )
        safely(() => {
          listener.onError(error)
        })
        break
      }
    }
  }

  const emit = (revision: bigint): void => {
    const instances: Instance[] = []
    for (const i of cache.values()) if (i !== undefined) instances.push(i)
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
        for (const kv of kvs) apply(next, cache, kv)
        cache = next
        emit(revision)
      },
      onEvents(events, revision) {
        for (const ev of events) {
          if (ev.type === 'Delete') cache.delete(ev.kv.key.toString('utf8'))
          else apply(cache, cache, ev.kv)
        }
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
