import { describe, expect, it } from 'vitest'
import { ErrorCode, InvalidOptionError, type WayfindError } from '../../../src/errors.js'
import { memoryRegistry } from '../../../src/registry/memory.js'
import type { ServiceSnapshot } from '../../../src/registry/provider.js'
import { parseRegistration } from '../../../src/registration/options.js'
import type { RegistrationState } from '../../../src/registration/contract.js'
import { FakeClock } from '../../support/fake-clock.js'

function collect() {
  const snapshots: ServiceSnapshot[] = []
  const errors: WayfindError[] = []
  return {
    snapshots,
    errors,
    listener: {
      onSnapshot: (s: ServiceSnapshot) => snapshots.push(s),
      onError: (e: WayfindError) => errors.push(e),
    },
  }
}
const flush = () => new Promise<void>((r) => setImmediate(r))

describe('memoryRegistry', () => {
  it('never calls the listener synchronously, then streams every change', async () => {
    const reg = memoryRegistry()
    const c = collect()
    const ac = new AbortController()
    reg.watch('pay', c.listener, { signal: ac.signal })
    expect(c.snapshots).toHaveLength(0)
    await flush()
    expect(c.snapshots.map((s) => s.instances.length)).toEqual([0])
    reg.put('pay', { id: 'a', host: '10.0.0.1', port: 80 })
    await flush()
    expect(c.snapshots.at(-1)!.instances.map((i) => i.host)).toEqual(['10.0.0.1'])
    expect(BigInt(c.snapshots.at(-1)!.revision)).toBeGreaterThan(BigInt(c.snapshots[0]!.revision))
    ac.abort()
    reg.put('pay', { id: 'b', host: '10.0.0.2', port: 80 })
    await flush()
    expect(c.snapshots).toHaveLength(2) // nothing after abort
    expect(reg.watchCount('pay')).toBe(0)
  })

  it('rejects invalid instances with a named option', () => {
    const reg = memoryRegistry()
    expect(() => reg.put('pay', { id: 'a', host: '10.0.0.1', port: 70000 })).toThrow(
      InvalidOptionError,
    )
    expect(() => reg.put('pay', { id: 'a', host: '10.0.0.1', port: 70000 })).toThrow(/port 70000/)
    expect(() => reg.put('', { id: 'a', host: '10.0.0.1', port: 1 })).toThrow(/"service"/)
  })

  it('fail()/recover() report retryable errors instead of snapshots', async () => {
    const reg = memoryRegistry()
    reg.put('pay', { id: 'a', host: '10.0.0.1', port: 80 })
    const c = collect()
    reg.watch('pay', c.listener, { signal: new AbortController().signal })
    await flush()
    reg.fail('pay')
    await flush()
    expect(c.errors.map((e) => [e.code, e.retryable])).toEqual([
      [ErrorCode.REGISTRY_UNAVAILABLE, true],
    ])
    reg.recover()
    await flush()
    expect(c.snapshots.at(-1)!.instances).toHaveLength(1)
  })

  it('expires a TTL registration without heartbeats and re-registers when heartbeats resume', async () => {
    const clock = new FakeClock()
    const reg = memoryRegistry({ clock })
    const states: RegistrationState[] = []
    const ac = new AbortController()
    const session = await reg.register(
      parseRegistration({
        name: 'pay',
        id: 'p1',
        address: '10.0.0.1',
        port: 80,
        check: { ttlMs: 3_000 },
      }),
      { signal: ac.signal, onState: (s) => states.push(s) },
    )
    expect(states).toEqual(['registered'])
    // Heartbeats every ttl/3 keep it alive far past the TTL.
    clock.advance(30_000)
    expect(reg.list('pay')).toHaveLength(1)
    // Stop heartbeating (abort): the TTL expires it.
    ac.abort()
    clock.advance(3_000)
    expect(reg.list('pay')).toHaveLength(0)
    await session.deregister(new AbortController().signal) // already gone: fine
  })

  it('a TTL registration removed behind its back is registered again by the next heartbeat', async () => {
    const clock = new FakeClock()
    const reg = memoryRegistry({ clock })
    const states: RegistrationState[] = []
    const ac = new AbortController()
    await reg.register(
      parseRegistration({
        name: 'pay',
        id: 'p1',
        address: '10.0.0.1',
        port: 80,
        check: { ttlMs: 3_000 },
      }),
      { signal: ac.signal, onState: (s) => states.push(s) },
    )
    reg.remove('pay', 'p1')
    expect(reg.list('pay')).toHaveLength(0)
    clock.advance(1_000)
    expect(reg.list('pay')).toHaveLength(1)
    expect(states).toEqual(['registered', 'lost', 'registered'])
    ac.abort()
  })

  it('deregister removes the instance and honours an aborted signal', async () => {
    const reg = memoryRegistry()
    const session = await reg.register(
      parseRegistration({ name: 'pay', address: '10.0.0.1', port: 80 }),
      {
        signal: new AbortController().signal,
        onState: () => {},
      },
    )
    expect(reg.list('pay').map((i) => i.id)).toEqual(['pay-10.0.0.1-80'])
    const aborted = AbortSignal.abort(new Error('too late'))
    await expect(session.deregister(aborted)).rejects.toThrow('too late')
    await session.deregister(new AbortController().signal)
    expect(reg.list('pay')).toHaveLength(0)
  })
})

describe('memoryRegistry() options', () => {
  it('refuses unknown keys and a clock without now()/setTimeout()', () => {
    expect(() => memoryRegistry({ clok: new FakeClock() } as never)).toThrow(
      /memoryRegistry\(\) has no option "clok"; did you mean "clock"\?/,
    )
    expect(() => memoryRegistry({ clock: {} as never })).toThrow(InvalidOptionError)
  })
})
