import { describe, expect, it, vi } from 'vitest'
import { DefaultLoadTracker } from '../../../src/balancer/load-tracker.js'
import { EMPTY_PICKER, type Picker, type Strategy } from '../../../src/balancer/strategy.js'
import { ServiceCache } from '../../../src/core/service-cache.js'
import {
  ErrorCode,
  ResolveTimeoutError,
  ClosedError,
  MalformedInstanceError,
} from '../../../src/errors.js'
import { createEvents, type ChangeEvent, type ErrorEvent } from '../../../src/events.js'
import { createInstance, type Instance } from '../../../src/instance.js'
import { memoryRegistry } from '../../../src/registry/memory.js'
import type { RegistryProvider, WatchListener } from '../../../src/registry/provider.js'
import { FakeClock } from '../../support/fake-clock.js'
import { waitFor } from '../../support/wait.js'

const load = new DefaultLoadTracker()

/** Picks the first instance; records each build so tests can see picker swaps. */
function firstStrategy(
  builds: { instances: readonly Instance[]; previous: Picker | undefined }[] = [],
): Strategy {
  return {
    name: 'first',
    createPicker(instances, ctx) {
      builds.push({ instances, previous: ctx.previous })
      const result = { kind: 'pick' as const, instance: instances[0]! }
      return { instances, pick: () => result }
    },
  }
}

/** A provider whose watches the test drives by hand. */
function manualProvider(): RegistryProvider & {
  listeners: Map<string, WatchListener>
  signals: Map<string, AbortSignal>
} {
  const listeners = new Map<string, WatchListener>()
  const signals = new Map<string, AbortSignal>()
  return {
    name: 'manual',
    listeners,
    signals,
    watch(service, listener, { signal }) {
      listeners.set(service, listener)
      signals.set(service, signal)
    },
    close: () => Promise.resolve(),
  }
}

const inst = (
  id: string,
  port = 8000,
  extra: Partial<Parameters<typeof createInstance>[0]> = {},
): Instance => createInstance({ id, service: 'pay', host: '127.0.0.1', port, ...extra })

function setup(
  provider: RegistryProvider,
  opts: { clock?: FakeClock; idleTtlMs?: number; strategy?: Strategy } = {},
) {
  const hub = createEvents()
  const clock = opts.clock ?? new FakeClock()
  const cache = new ServiceCache({
    provider,
    strategy: opts.strategy ?? firstStrategy(),
    load,
    hub,
    clock,
    random: () => 0.5,
    idleTtlMs: opts.idleTtlMs ?? 60_000,
    resolveTimeoutMs: 1_000,
  })
  const changes: ChangeEvent[] = []
  const errors: ErrorEvent[] = []
  hub.api.on('change', (e) => changes.push(e))
  hub.api.on('error', (e) => errors.push(e))
  return { cache, hub, clock, changes, errors }
}

describe('ServiceCache', () => {
  it('starts a watch lazily, once per service', () => {
    const p = manualProvider()
    const { cache } = setup(p)
    expect(p.listeners.size).toBe(0)
    expect(cache.instances('pay')).toEqual([])
    cache.instances('pay')
    cache.picker('pay')
    expect([...p.listeners.keys()]).toEqual(['pay'])
  })

  it('emits change only on a real content change, with added/removed/updated', () => {
    const p = manualProvider()
    const { cache, changes } = setup(p)
    cache.instances('pay')
    const l = p.listeners.get('pay')!
    l.onSnapshot({ service: 'pay', instances: [inst('a'), inst('b', 8001)], revision: '1' })
    expect(changes).toHaveLength(1)
    expect(changes[0]!.added.map((i) => i.id)).toEqual(['a', 'b'])
    // Same content at a new revision: nothing.
    l.onSnapshot({ service: 'pay', instances: [inst('b', 8001), inst('a')], revision: '2' })
    expect(changes).toHaveLength(1)
    // b moved, a left, c arrived.
    l.onSnapshot({ service: 'pay', instances: [inst('b', 9001), inst('c', 8002)], revision: '3' })
    expect(changes).toHaveLength(2)
    const e = changes[1]!
    expect(e.added.map((i) => i.id)).toEqual(['c'])
    expect(e.removed.map((i) => i.id)).toEqual(['a'])
    expect(e.updated.map((i) => `${i.id}:${i.port}`)).toEqual(['b:9001'])
    expect(cache.instances('pay').map((i) => i.id)).toEqual(['b', 'c'])
  })

  it('treats tag, meta, weight and status changes as updates', () => {
    const p = manualProvider()
    const { cache, changes } = setup(p)
    cache.instances('pay')
    const l = p.listeners.get('pay')!
    l.onSnapshot({ service: 'pay', instances: [inst('a')], revision: '1' })
    l.onSnapshot({ service: 'pay', instances: [inst('a', 8000, { tags: ['v2'] })], revision: '2' })
    l.onSnapshot({
      service: 'pay',
      instances: [inst('a', 8000, { tags: ['v2'], meta: { zone: 'b' } })],
      revision: '3',
    })
    l.onSnapshot({
      service: 'pay',
      instances: [inst('a', 8000, { tags: ['v2'], meta: { zone: 'b' }, weight: 3 })],
      revision: '4',
    })
    l.onSnapshot({
      service: 'pay',
      instances: [
        inst('a', 8000, { tags: ['v2'], meta: { zone: 'b' }, weight: 3, status: 'warning' }),
      ],
      revision: '5',
    })
    expect(changes.map((c) => c.updated.length)).toEqual([0, 1, 1, 1, 1])
  })

  it('keeps the last good set on errors and reports them as events', () => {
    const p = manualProvider()
    const { cache, changes, errors } = setup(p)
    cache.instances('pay')
    const l = p.listeners.get('pay')!
    l.onSnapshot({ service: 'pay', instances: [inst('a')], revision: '1' })
    const picker = cache.picker('pay')
    l.onError(new MalformedInstanceError('/services/pay/x', 'bad json'))
    l.onError(new ResolveTimeoutError('pay', 1))
    expect(errors.map((e) => e.error.code)).toEqual([
      ErrorCode.MALFORMED_INSTANCE,
      ErrorCode.RESOLVE_TIMEOUT,
    ])
    expect(errors[0]!.service).toBe('pay')
    expect(cache.picker('pay')).toBe(picker)
    expect(cache.instances('pay').map((i) => i.id)).toEqual(['a'])
    expect(changes).toHaveLength(1)
  })

  it('applies and announces a confirmed empty set', () => {
    const p = manualProvider()
    const { cache, changes } = setup(p)
    cache.instances('pay')
    const l = p.listeners.get('pay')!
    l.onSnapshot({ service: 'pay', instances: [inst('a')], revision: '1' })
    l.onSnapshot({ service: 'pay', instances: [], revision: '2' })
    expect(changes).toHaveLength(2)
    expect(changes[1]!.removed.map((i) => i.id)).toEqual(['a'])
    expect(cache.picker('pay')).toBe(EMPTY_PICKER)
  })

  it('builds a new picker on the first pick after a change, handing over the previous one', () => {
    const p = manualProvider()
    const builds: { instances: readonly Instance[]; previous: Picker | undefined }[] = []
    const { cache } = setup(p, { strategy: firstStrategy(builds) })
    cache.instances('pay')
    const l = p.listeners.get('pay')!
    l.onSnapshot({ service: 'pay', instances: [inst('a')], revision: '1' })
    const first = cache.picker('pay')
    l.onSnapshot({ service: 'pay', instances: [inst('a'), inst('b', 8001)], revision: '2' })
    // Not before someone picks: the change event does not wait for a picker.
    expect(builds).toHaveLength(1)
    const second = cache.picker('pay')
    expect(second).not.toBe(first)
    expect(second.instances.map((i) => i.id)).toEqual(['a', 'b'])
    expect(builds).toHaveLength(2)
    expect(builds[0]!.previous).toBeUndefined()
    expect(builds[1]!.previous).toBe(first)
    expect(cache.picker('pay')).toBe(second)
    expect(builds).toHaveLength(2)
  })

  it('changes no one picked between build no picker; an empty set is EMPTY_PICKER at once', () => {
    const p = manualProvider()
    const builds: { instances: readonly Instance[]; previous: Picker | undefined }[] = []
    const { cache } = setup(p, { strategy: firstStrategy(builds) })
    cache.instances('pay')
    const l = p.listeners.get('pay')!
    l.onSnapshot({ service: 'pay', instances: [inst('a')], revision: '1' })
    l.onSnapshot({ service: 'pay', instances: [inst('b', 8001)], revision: '2' })
    l.onSnapshot({ service: 'pay', instances: [inst('c', 8002)], revision: '3' })
    expect(builds).toHaveLength(0)
    expect(cache.picker('pay').instances.map((i) => i.id)).toEqual(['c'])
    expect(builds).toHaveLength(1)
    l.onSnapshot({ service: 'pay', instances: [], revision: '4' })
    expect(cache.picker('pay')).toBe(EMPTY_PICKER)
    l.onSnapshot({ service: 'pay', instances: [inst('d', 8003)], revision: '5' })
    expect(cache.picker('pay').instances.map((i) => i.id)).toEqual(['d'])
    // After an empty set there is no previous picker to hand over, as before the set emptied.
    expect(builds[1]!.previous).toBeUndefined()
  })

  it('drops duplicate keys and reports them', () => {
    const p = manualProvider()
    const { cache, errors } = setup(p)
    cache.instances('pay')
    p.listeners.get('pay')!.onSnapshot({
      service: 'pay',
      instances: [inst('a'), inst('a', 9000), inst('b', 8001)],
      revision: '1',
    })
    expect(cache.instances('pay').map((i) => `${i.id}:${i.port}`)).toEqual(['a:8000', 'b:8001'])
    expect(errors.map((e) => e.error.code)).toEqual([ErrorCode.MALFORMED_INSTANCE])
  })

  it('drops duplicate keys from a set that is not sorted by key, and diffs it by key', () => {
    const p = manualProvider()
    const { cache, errors, changes } = setup(p)
    cache.instances('pay')
    const l = p.listeners.get('pay')!
    l.onSnapshot({
      service: 'pay',
      instances: [inst('c'), inst('a'), inst('c', 9000)],
      revision: '1',
    })
    expect(cache.instances('pay').map((i) => `${i.id}:${i.port}`)).toEqual(['c:8000', 'a:8000'])
    expect(errors.map((e) => e.error.code)).toEqual([ErrorCode.MALFORMED_INSTANCE])
    l.onSnapshot({ service: 'pay', instances: [inst('b'), inst('c', 8001)], revision: '2' })
    const last = changes.at(-1)!
    expect(last.added.map((i) => i.id)).toEqual(['b'])
    expect(last.removed.map((i) => i.id)).toEqual(['a'])
    expect(last.updated.map((i) => `${i.id}:${i.port}`)).toEqual(['c:8001'])
  })

  it('resolve() waits for the first instance, event-driven', async () => {
    const p = manualProvider()
    const { cache } = setup(p)
    const pending = cache.resolve('pay', { timeoutMs: 5_000 })
    await Promise.resolve()
    p.listeners.get('pay')!.onSnapshot({ service: 'pay', instances: [], revision: '1' })
    let settled = false
    void pending.then(() => (settled = true))
    await Promise.resolve()
    expect(settled).toBe(false) // an empty answer does not wake waiters
    p.listeners.get('pay')!.onSnapshot({ service: 'pay', instances: [inst('a')], revision: '2' })
    const got = await pending
    expect(got.map((i) => i.id)).toEqual(['a'])
  })

  it('resolve() times out with RESOLVE_TIMEOUT carrying the last registry error as cause', async () => {
    const p = manualProvider()
    const clock = new FakeClock()
    const { cache } = setup(p, { clock })
    const pending = cache.resolve('pay', { timeoutMs: 2_000 })
    const cause = new MalformedInstanceError('k', 'x', { retryable: true })
    // Only non-malformed errors become the cause: use a registry error.
    const { RegistryUnavailableError } = await import('../../../src/errors.js')
    const down = new RegistryUnavailableError('down')
    p.listeners.get('pay')!.onError(cause)
    p.listeners.get('pay')!.onError(down)
    clock.advance(1_999)
    clock.advance(1)
    const err = await pending.catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ResolveTimeoutError)
    expect((err as ResolveTimeoutError).code).toBe('WAYFIND_ERR_RESOLVE_TIMEOUT')
    expect((err as ResolveTimeoutError).cause).toBe(down)
    expect(clock.pending).toBe(0)
  })

  it('resolve() rejects with signal.reason on abort, and removes its waiter', async () => {
    const p = manualProvider()
    const { cache, clock } = setup(p)
    const ac = new AbortController()
    const pending = cache.resolve('pay', { signal: ac.signal, timeoutMs: 5_000 })
    const reason = new Error('caller gave up')
    ac.abort(reason)
    await expect(pending).rejects.toBe(reason)
    expect(clock.pending).toBe(0)
    // Already aborted: rejects at once.
    await expect(cache.resolve('pay', { signal: ac.signal })).rejects.toBe(reason)
  })

  it('unwatches idle services after the TTL (and not while someone waits)', async () => {
    const reg = memoryRegistry()
    reg.put('pay', { id: 'a', host: '127.0.0.1', port: 8000 })
    const clock = new FakeClock()
    const { cache } = setup(reg, { clock, idleTtlMs: 10_000 })
    await cache.resolve('pay')
    expect(reg.watchCount('pay')).toBe(1)
    clock.advance(5_000)
    cache.instances('pay') // use refreshes the age
    clock.advance(6_000)
    cache.purgeIdle()
    expect(reg.watchCount('pay')).toBe(1)
    clock.advance(10_001)
    cache.purgeIdle()
    expect(reg.watchCount('pay')).toBe(0)
    expect(cache.services()).toEqual([])

    // A waiter keeps its service watched past the TTL.
    const waiting = cache.resolve('ghost', { timeoutMs: 60_000 })
    clock.advance(20_000)
    cache.purgeIdle()
    await Promise.resolve()
    expect(reg.watchCount('ghost')).toBe(1)
    reg.put('ghost', { id: 'g', host: '127.0.0.1', port: 9000 })
    expect((await waiting).map((i) => i.id)).toEqual(['g'])
  })

  it('isolates throwing listeners from the watch and from each other', () => {
    const p = manualProvider()
    const { cache, hub, changes } = setup(p)
    const warnings: string[] = []
    // Captured rather than printed: the warnings are the assertion.
    const spy = vi.spyOn(process, 'emitWarning').mockImplementation(((
      _w: string,
      o?: { code?: string },
    ) => {
      warnings.push(o?.code ?? '')
    }) as typeof process.emitWarning)
    try {
      hub.api.on('change', () => {
        throw new Error('user bug')
      })
      cache.onChange(() => {
        throw new Error('internal bug')
      })
      cache.instances('pay')
      expect(() =>
        p.listeners
          .get('pay')!
          .onSnapshot({ service: 'pay', instances: [inst('a')], revision: '1' }),
      ).not.toThrow()
      expect(changes).toHaveLength(1) // the other listener still ran
      expect(cache.instances('pay')).toHaveLength(1)
      expect(warnings).toEqual(['WAYFIND_LISTENER_ERROR', 'WAYFIND_LISTENER_ERROR'])
    } finally {
      spy.mockRestore()
    }
  })

  it('close() aborts every watch, rejects waiters with ClosedError and silences listeners', async () => {
    const p = manualProvider()
    const { cache, changes } = setup(p)
    const pending = cache.resolve('pay', { timeoutMs: 60_000 })
    cache.instances('other')
    await cache.close()
    await expect(pending).rejects.toBeInstanceOf(ClosedError)
    expect(p.signals.get('pay')!.aborted).toBe(true)
    expect(p.signals.get('other')!.aborted).toBe(true)
    p.listeners.get('pay')!.onSnapshot({ service: 'pay', instances: [inst('a')], revision: '9' })
    expect(changes).toHaveLength(0)
    expect(() => cache.instances('pay')).toThrow(ClosedError)
    await expect(cache.resolve('pay')).rejects.toBeInstanceOf(ClosedError)
    await cache.close() // idempotent
  })

  it('works end to end with the memory registry', async () => {
    const reg = memoryRegistry()
    const { cache, hub } = setup(reg)
    const change = waitFor(hub.api, 'change', (e) => e.instances.length === 2)
    const got = cache.resolve('pay')
    reg.put('pay', { id: 'a', host: '127.0.0.1', port: 8000 })
    reg.put('pay', { id: 'b', host: '127.0.0.1', port: 8001 })
    expect((await got).length).toBeGreaterThanOrEqual(1)
    expect((await change).instances.map((i) => i.id).sort()).toEqual(['a', 'b'])
  })
})
