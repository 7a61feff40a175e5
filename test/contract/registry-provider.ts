/**
 * The registry provider contract, as one shared suite: run against the memory registry (unit),
 * the Consul test server and a real etcd (integration). Every provider must behave the same
 * way at this seam, whatever it talks to.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { ErrorCode, type WayfindError } from '../../src/errors.js'
import type { RegistryProvider, ServiceSnapshot } from '../../src/registry/provider.js'
import { parseRegistration } from '../../src/registration/options.js'
import { withDeadline } from '../support/wait.js'

/** How the suite drives a registry from the outside (as another process would). */
export interface ContractHarness {
  /** A fresh provider talking to the registry under test. */
  provider(): RegistryProvider
  /** Writes an instance directly into the registry (not through the provider). */
  put(service: string, id: string, host: string, port: number): Promise<void>
  /** Removes it directly. */
  remove(service: string, id: string): Promise<void>
  /** Whether the registry lists `id` for `service` right now (read directly). */
  lists(service: string, id: string): Promise<boolean>
  /** Tears the registry down. */
  close(): Promise<void>
}

/** Collects a watch's callbacks and lets the test wait for a matching snapshot. */
class Recorder {
  readonly snapshots: ServiceSnapshot[] = []
  readonly errors: WayfindError[] = []
  #waiters: { match: (s: ServiceSnapshot) => boolean; resolve: (s: ServiceSnapshot) => void }[] = []
  readonly listener = {
    onSnapshot: (s: ServiceSnapshot) => {
      this.snapshots.push(s)
      for (const w of [...this.#waiters])
        if (w.match(s)) {
          this.#waiters.splice(this.#waiters.indexOf(w), 1)
          w.resolve(s)
        }
    },
    onError: (e: WayfindError) => {
      this.errors.push(e)
    },
  }
  next(
    match: (s: ServiceSnapshot) => boolean,
    what: string,
    timeoutMs = 15_000,
  ): Promise<ServiceSnapshot> {
    const last = this.snapshots.at(-1)
    if (last !== undefined && match(last)) return Promise.resolve(last)
    return withDeadline(
      new Promise<ServiceSnapshot>((resolve) => this.#waiters.push({ match, resolve })),
      timeoutMs,
      what,
    )
  }
}

const ids = (s: ServiceSnapshot): string[] => s.instances.map((i) => i.id).sort()
let seq = 0
const uniqueService = (): string => `contract-${process.pid}-${Date.now().toString(36)}-${seq++}`

/** Defines the contract suite for one registry. */
export function registryProviderContract(
  name: string,
  makeHarness: () => Promise<ContractHarness>,
): void {
  describe(`RegistryProvider contract: ${name}`, () => {
    let h: ContractHarness
    let provider: RegistryProvider
    beforeAll(async () => {
      h = await makeHarness()
      provider = h.provider()
    })
    afterAll(async () => {
      await provider.close()
      await h.close()
    })

    it('never calls the listener synchronously from watch()', async () => {
      const service = uniqueService()
      const rec = new Recorder()
      const ac = new AbortController()
      provider.watch(service, rec.listener, { signal: ac.signal })
      expect(rec.snapshots).toHaveLength(0)
      expect(rec.errors).toHaveLength(0)
      await rec.next(() => true, 'a first snapshot')
      ac.abort()
    })

    it('delivers the initial set, then additions and removals, with instances fully mapped', async () => {
      const service = uniqueService()
      await h.put(service, 'a', '127.0.0.1', 7001)
      const rec = new Recorder()
      const ac = new AbortController()
      provider.watch(service, rec.listener, { signal: ac.signal })
      const first = await rec.next((s) => s.instances.length === 1, 'the initial instance')
      const a = first.instances[0]!
      expect(first.service).toBe(service)
      expect(a).toMatchObject({
        id: 'a',
        service,
        host: '127.0.0.1',
        port: 7001,
        status: 'passing',
      })
      expect(a.weight).toBeGreaterThan(0)
      expect(Object.isFrozen(a)).toBe(true)
      expect(typeof first.revision).toBe('string')
      expect(first.revision).toMatch(/^\d+$/)

      await h.put(service, 'b', '127.0.0.1', 7002)
      await rec.next((s) => ids(s).join() === 'a,b', 'b to appear')
      await h.remove(service, 'a')
      const last = await rec.next((s) => ids(s).join() === 'b', 'a to disappear')
      expect(last.instances[0]!.port).toBe(7002)
      ac.abort()
    })

    it('goes quiet once the signal aborts', async () => {
      const service = uniqueService()
      const rec = new Recorder()
      const ac = new AbortController()
      provider.watch(service, rec.listener, { signal: ac.signal })
      await rec.next(() => true, 'a first snapshot')
      ac.abort()
      const seen = rec.snapshots.length
      await h.put(service, 'late', '127.0.0.1', 7003)
      // A second watch on the same service proves the write was delivered to watchers...
      const control = new Recorder()
      const ac2 = new AbortController()
      provider.watch(service, control.listener, { signal: ac2.signal })
      await control.next((s) => ids(s).includes('late'), 'the control watch to see the write')
      ac2.abort()
      // ...and the aborted one heard nothing.
      expect(rec.snapshots).toHaveLength(seen)
    })

    it('reports a throwing listener as a WAYFIND_LISTENER_ERROR warning and keeps watching', async () => {
      const service = uniqueService()
      const warnings: { message: string; code: string | undefined }[] = []
      // Captured rather than printed: the warnings are the assertion.
      const spy = vi.spyOn(process, 'emitWarning').mockImplementation(((
        warning: string | Error,
        options?: { code?: string },
      ) => {
        warnings.push({ message: String(warning), code: options?.code })
      }) as typeof process.emitWarning)
      const rec = new Recorder()
      const ac = new AbortController()
      let thrown = 0
      try {
        provider.watch(
          service,
          {
            onSnapshot: (s) => {
              rec.listener.onSnapshot(s)
              thrown++
              throw new Error(`listener bug ${thrown}`)
            },
            onError: rec.listener.onError,
          },
          { signal: ac.signal },
        )
        await rec.next(() => true, 'a first snapshot')
        await h.put(service, 'after-throw', '127.0.0.1', 7004)
        await rec.next((s) => ids(s).includes('after-throw'), 'a snapshot after the throw')
        const ours = warnings.filter((w) => w.message.includes('listener bug'))
        expect(ours.length).toBeGreaterThanOrEqual(2)
        expect(ours.length).toBe(thrown)
        for (const w of ours) expect(w.code).toBe('WAYFIND_LISTENER_ERROR')
      } finally {
        ac.abort()
        spy.mockRestore()
      }
    })

    it('throws ClosedError from watch() after close()', async () => {
      const p = h.provider()
      await p.close()
      const ac = new AbortController()
      let error: unknown
      try {
        p.watch(uniqueService(), new Recorder().listener, { signal: ac.signal })
      } catch (err) {
        error = err
      }
      expect(error).toMatchObject({ code: ErrorCode.CLOSED })
    })

    it('registers and deregisters through the provider', async () => {
      if (provider.register === undefined) return
      const service = uniqueService()
      const ac = new AbortController()
      const states: string[] = []
      const session = await provider.register(
        parseRegistration({
          name: service,
          id: 'self',
          address: '127.0.0.1',
          port: 7010,
          check: { ttlMs: 10_000 },
        }),
        { signal: ac.signal, onState: (s) => states.push(s) },
      )
      expect(states[0]).toBe('registered')
      const rec = new Recorder()
      const wac = new AbortController()
      provider.watch(service, rec.listener, { signal: wac.signal })
      await rec.next((s) => ids(s).includes('self'), 'the registration to be visible')
      expect(await h.lists(service, 'self')).toBe(true)
      ac.abort()
      await session.deregister(AbortSignal.timeout(5_000))
      await rec.next((s) => !ids(s).includes('self'), 'the deregistration to be visible')
      expect(await h.lists(service, 'self')).toBe(false)
      // Deregistering again is not an error ("already gone" is success).
      await session.deregister(AbortSignal.timeout(5_000))
      wac.abort()
    })

    it('close() is idempotent', async () => {
      const p = h.provider()
      await p.close()
      await p.close()
    })
  })
}
