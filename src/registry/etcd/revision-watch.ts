/**
 * List-then-watch over one key range, with our own revision bookkeeping
 * (docs/design/etcd.md#list-then-watch).
 *
 * etcd3's Watcher moves its resume point to `header.revision + 1` when a watch is *created*,
 * before etcd has replayed older events, so a second disconnect inside that window loses them
 * (docs/design/etcd.md#why-not-etcd3s-watcher); it also dies for good on compaction and on an
 * expired token (docs/design/etcd.md#compaction, #auth-token-expiry).
 * So we drive the raw Watch stream ourselves, like the Go client (`client/v3/watch.go`,
 * `serveSubstream`), one stream shared by every range (watch-mux.ts): the resume point moves
 * only on events and on progress notifications, a cancel (compaction or anything else) means
 * re-list and watch again, and a store whose revision went backwards (data wiped) is re-listed
 * too.
 */
import type { IEvent } from 'etcd3'
import { abortReason, isAborted, sleep } from '../../core/abort.js'
import { Backoff } from '../../core/backoff.js'
import { errorMessage, type WayfindError } from '../../errors.js'
import { debug, isInvalidToken, unavailable, type WayfindEtcd3 } from './client.js'
import type { ParsedEtcdOptions } from './options.js'
import type { ListedKv } from './range-wire.js'
import { watchMuxOf, type StreamEnd } from './watch-mux.js'

/** Receives the state of the range. Called in order, never after the signal aborted. */
export interface RevisionWatchHandler {
  /** A consistent listing at `revision` (every page pinned to it): replaces any earlier state. */
  onList(kvs: readonly ListedKv[], revision: bigint): void
  /** The events of one watch response, in revision order; every one is newer than the last applied. */
  onEvents(events: readonly IEvent[], revision: bigint): void
  /** A failure the loop survives (it retries with backoff). */
  onError(error: WayfindError): void
  /** The watch stream was (re)created and etcd confirmed it (for tests and debug output). */
  onWatching?(): void
  /** A re-list is starting, and why (compaction, cancel reason...). For tests and debug output. */
  onRelist?(why: string): void
}

/**
 * Runs until `signal` aborts; never rejects. `what` names the range in errors ("watching
 * service payments").
 */
export async function runRevisionWatch(
  client: WayfindEtcd3,
  options: ParsedEtcdOptions,
  range: { readonly key: Buffer; readonly end: Buffer },
  handler: RevisionWatchHandler,
  signal: AbortSignal,
  what: string,
): Promise<void> {
  const backoff = new Backoff(options.backoff)
  const username = options.auth?.username
  // Last revision whose events are all applied; undefined until the first listing.
  let applied: bigint | undefined
  let mustList = true

  const fail = async (err: unknown, doing: string): Promise<void> => {
    if (signal.aborted) return
    debug('%s: %s failed: %s', what, doing, err instanceof Error ? err.message : String(err))
    handler.onError(unavailable(`${doing} (${what})`, err, username))
    await sleep(backoff.next(), signal).catch(() => undefined)
  }

  while (!signal.aborted) {
    if (mustList) {
      try {
        const { kvs, revision } = await listRange(client, options, range, signal)
        if (isAborted(signal)) return
        applied = revision
        mustList = false
        handler.onList(kvs, revision)
      } catch (err) {
        await fail(err, 'listing')
        continue
      }
    }
    const from = (applied ?? 0n) + 1n
    let end: StreamEnd
    try {
      end = await watchMuxOf(client).watch(range, from, signal, {
        created(header) {
          // The store is behind what we applied: its data was replaced (restore, wipe), or this
          // member lags. Our revision may mean nothing there (microsoft/etcd3#31): re-list.
          if (applied !== undefined && header < applied) return 'store revision went backwards'
          backoff.reset()
          handler.onWatching?.()
          return undefined
        },
        events(events, header) {
          if (signal.aborted) return
          let newest = applied ?? 0n
          const fresh: IEvent[] = []
          for (const ev of events) {
            const rev = BigInt(ev.kv.mod_revision)
            // Duplicates can only come from a resume that overlapped what we applied.
            if (applied !== undefined && rev <= applied) continue
            fresh.push(ev)
            if (rev > newest) newest = rev
          }
          if (events.length === 0) {
            // A progress notification: every later event is newer than header.revision.
            if (header > newest) newest = header
            applied = newest
            return
          }
          applied = newest
          if (fresh.length > 0) handler.onEvents(fresh, newest)
        },
      })
    } catch (err) {
      // Opening the stream failed (no host, authentication...).
      if (isInvalidToken(err)) {
        mustList = true
        handler.onRelist?.(`invalid auth token: ${errorMessage(err)}`)
      }
      await fail(err, 'opening the watch stream')
      continue
    }
    switch (end.kind) {
      case 'aborted':
        return
      case 'relist':
        debug('%s: re-listing: %s', what, end.why)
        handler.onRelist?.(end.why)
        mustList = true
        // A member behind us (lagging, or wiped) may stay behind for a moment: do not spin.
        if (end.delay === true) await sleep(backoff.next(), signal).catch(() => undefined)
        break
      case 'resume':
        // An expired token is only refreshed by etcd3's unary path: the listing does that.
        if (isInvalidToken(end.error)) {
          mustList = true
          handler.onRelist?.(`invalid auth token: ${errorMessage(end.error)}`)
        }
        await fail(end.error, 'watching')
        break
    }
  }
}

/**
 * Size a listing page aims at once the first page showed how large the entries are: a quarter of
 * grpc-js' default 4 MiB receive limit, so that a page stays far from it even when later values
 * are several times larger than the first page's.
 */
const PAGE_TARGET_BYTES = 1 << 20

/**
 * Keys to ask for in the next page: as many as fit in {@link PAGE_TARGET_BYTES} at the size the
 * last page averaged, never fewer than `pageSize`. Every page is a round trip, and a large
 * service in `pageSize` pages spent most of its listing waiting on them (5,000 keys: 10 pages).
 */
export function nextPageLimit(pageSize: number, kvs: readonly ListedKv[]): number {
  let bytes = 0
  for (const kv of kvs) bytes += kv.key.length + kv.value.length
  if (kvs.length === 0 || bytes === 0) return pageSize
  return Math.max(pageSize, Math.floor(PAGE_TARGET_BYTES / (bytes / kvs.length)))
}

/**
 * Lists `range` at one revision, page by page (every page pinned to the first page's revision).
 * The first page holds `pageSize` keys; later pages grow to about {@link PAGE_TARGET_BYTES}.
 * Pages are read by range-wire.ts, not etcd3's decoder (see there why).
 */
async function listRange(
  client: WayfindEtcd3,
  options: ParsedEtcdOptions,
  range: { readonly key: Buffer; readonly end: Buffer },
  signal: AbortSignal,
): Promise<{ kvs: ListedKv[]; revision: bigint }> {
  const kvs: ListedKv[] = []
  let revision: bigint | undefined
  let from = range.key
  let limit = options.pageSize
  for (;;) {
    const res = await client.rangePage({
      key: from,
      rangeEnd: range.end,
      limit,
      ...(revision === undefined ? {} : { revision }),
    })
    if (signal.aborted) throw abortReason(signal)
    revision ??= res.revision
    for (const kv of res.kvs) kvs.push(kv)
    const last = res.kvs.at(-1)
    if (!res.more || last === undefined) return { kvs, revision }
    from = Buffer.concat([last.key, Buffer.from([0])])
    limit = nextPageLimit(options.pageSize, res.kvs)
  }
}
