import { describe, expect, expectTypeOf, it } from 'vitest'
import {
  ClosedError,
  createWayfind,
  InvalidOptionError,
  memoryRegistry,
  RegistrationError,
  ResolveTimeoutError,
  type ChangeEvent,
  type Instance,
  type RegistrationHandle,
  type RegistryProvider,
  type Wayfind,
} from '../../src/index.js'
import { waitFor } from '../support/wait.js'
import { invalidOption } from '../support/errors.js'

describe('createWayfind options', () => {
  it.each([
    [{ strategy: 'fastest' }, 'strategy', /"round-robin", "least-loaded", "random"/],
    [{ strategy: {} }, 'strategy', /createPicker/],
    [{ registry: {} }, 'registry', /consul\(\{ url \}\)/],
    [{ resolveTimeoutMs: '5s' }, 'resolveTimeoutMs', /milliseconds/],
    [{ resolveTimeoutMs: -1 }, 'resolveTimeoutMs', /between 1 and/],
    [{ idleTtlMs: 10 }, 'idleTtlMs', /between 1000/],
    [{ idleTtlMs: 2 ** 31 - 1 }, 'idleTtlMs', /between 1000 and 604800000/],
    [{ resolveTimeout: 5_000 }, 'resolveTimeout', /did you mean "resolveTimeoutMs"/],
    [{ random: 4 }, 'random', /function/],
    [{ resolveTimeoutMs: Number.NaN }, 'resolveTimeoutMs', /milliseconds/],
    [{ dispatcher: { resolved: true } }, 'dispatcher.resolved', /has no option "resolved"/],
    [
      { dispatcher: { retry: { maxAttempts: 3 } } },
      'dispatcher.retry.maxAttempts',
      /"dispatcher\.retry" has no option "maxAttempts"/,
    ],
    [{ dispatcher: { conections: 3 } }, 'dispatcher.conections', /"dispatcher\.connections"/],
  ])('rejects %j, naming %s and the fix', (options, option, fix) => {
    const e = invalidOption(() => createWayfind(options as never))
    expect(e.code).toBe('WAYFIND_ERR_INVALID_OPTION')
    expect(e.option).toBe(option)
    expect(e.message).toMatch(fix)
  })

  it('does nothing at construction: no watch until first use', () => {
    const reg = memoryRegistry()
    const wf = createWayfind({ registry: reg })
    expect(reg.watchCount('pay')).toBe(0)
    expect(wf.instances('pay')).toEqual([])
    expect(reg.watchCount('pay')).toBe(1)
    return wf.close()
  })
})

describe('client', () => {
  it('resolves, emits typed change events, and rejects with RESOLVE_TIMEOUT', async () => {
    const reg = memoryRegistry()
    await using wf = createWayfind({ registry: reg })
    const changed = waitFor(wf.events, 'change', (e) => e.service === 'pay')
    const pending = wf.resolve('pay', { timeoutMs: 5_000 })
    reg.put('pay', { id: 'a', host: '10.0.0.1', port: 80, tags: ['v2'] })
    const instances = await pending
    expect(instances.map((i) => [i.id, i.host, i.port, i.tags])).toEqual([
      ['a', '10.0.0.1', 80, ['v2']],
    ])
    expect((await changed).added.map((i) => i.id)).toEqual(['a'])
    await expect(wf.resolve('nobody', { timeoutMs: 50 })).rejects.toBeInstanceOf(
      ResolveTimeoutError,
    )
    await expect(wf.resolve('')).rejects.toBeInstanceOf(InvalidOptionError)
  })

  it('keeps serving the last good set while the registry fails, and reports errors', async () => {
    const reg = memoryRegistry()
    reg.put('pay', { id: 'a', host: '10.0.0.1', port: 80 })
    await using wf = createWayfind({ registry: reg })
    await wf.resolve('pay')
    const error = waitFor(wf.events, 'error', (e) => e.service === 'pay')
    reg.fail('pay')
    expect((await error).error.code).toBe('WAYFIND_ERR_REGISTRY_UNAVAILABLE')
    expect(wf.instances('pay').map((i) => i.id)).toEqual(['a'])
    expect((await wf.resolve('pay')).length).toBe(1)
  })

  it('registers, reports events, and deregisters on close', async () => {
    const reg = memoryRegistry()
    const wf = createWayfind({ registry: reg.client() })
    const registered = waitFor(wf.events, 'registered')
    const handle = await wf.register({ name: 'pay', id: 'p1', address: '10.0.0.1', port: 80 })
    expect(await registered).toEqual({ service: 'pay', id: 'p1' })
    expect(handle.state).toBe('registered')
    expect(reg.list('pay').map((i) => i.id)).toEqual(['p1'])
    await wf.close()
    expect(handle.state).toBe('deregistered')
    expect(reg.list('pay')).toEqual([])
  })

  it('deregister() rejects bad options with INVALID_OPTION (never throws) and stays usable', async () => {
    const reg = memoryRegistry()
    await using wf = createWayfind({ registry: reg.client() })
    const handle = await wf.register({ name: 'pay', id: 'p1', address: '10.0.0.1', port: 80 })
    let pending: Promise<void> | undefined
    expect(() => {
      pending = handle.deregister({ timeoutMs: -1 })
    }).not.toThrow()
    await expect(pending).rejects.toMatchObject({
      code: 'WAYFIND_ERR_INVALID_OPTION',
      option: 'timeoutMs',
    })
    await handle.deregister()
    expect(reg.list('pay')).toEqual([])
  })

  it('deregister() is idempotent and bounded', async () => {
    const slow: RegistryProvider = {
      name: 'slow',
      watch: () => {},
      register: () => Promise.resolve({ deregister: () => new Promise<void>(() => {}) }), // never answers
      close: () => Promise.resolve(),
    }
    await using wf = createWayfind({ registry: slow })
    const handle = await wf.register({ name: 'pay', address: '10.0.0.1', port: 80 })
    const started = performance.now()
    const first = handle.deregister({ timeoutMs: 100 })
    expect(handle.deregister()).toBe(first)
    await expect(first).rejects.toBeInstanceOf(RegistrationError)
    expect(performance.now() - started).toBeLessThan(2_000)
  })

  it('rejects register() on a read-only registry with REGISTRATION_FAILED', async () => {
    const readOnly: RegistryProvider = {
      name: 'ro',
      watch: () => {},
      close: () => Promise.resolve(),
    }
    await using wf = createWayfind({ registry: readOnly })
    await expect(wf.register({ name: 'pay', address: '10.0.0.1', port: 80 })).rejects.toMatchObject(
      {
        code: 'WAYFIND_ERR_REGISTRATION_FAILED',
      },
    )
  })

  it('after close(): methods throw ClosedError naming the method, pending resolves reject, no events', async () => {
    const reg = memoryRegistry()
    const wf = createWayfind({ registry: reg })
    const seen: ChangeEvent[] = []
    wf.events.on('change', (e) => seen.push(e))
    const pending = wf.resolve('pay', { timeoutMs: 60_000 })
    await wf.close()
    await wf.close()
    expect(wf.closed).toBe(true)
    await expect(pending).rejects.toBeInstanceOf(ClosedError)
    expect(() => wf.instances('pay')).toThrow(/instances\(\) was called after close/)
    await expect(wf.resolve('pay')).rejects.toThrow(/resolve\(\) was called after close/)
    await expect(wf.register({ name: 'x', address: '10.0.0.1', port: 1 })).rejects.toBeInstanceOf(
      ClosedError,
    )
    expect(seen).toEqual([])
  })

  it('has the public types of docs/design/README.md#public-api', () => {
    expectTypeOf(createWayfind).returns.toEqualTypeOf<Wayfind>()
    expectTypeOf<Wayfind['resolve']>().returns.toEqualTypeOf<Promise<readonly Instance[]>>()
    expectTypeOf<Wayfind['register']>().returns.toEqualTypeOf<Promise<RegistrationHandle>>()
    expectTypeOf<ChangeEvent>().toHaveProperty('updated').toEqualTypeOf<readonly Instance[]>()
    expectTypeOf<Instance['status']>().toEqualTypeOf<'passing' | 'warning'>()
    expectTypeOf<Wayfind>().toExtend<AsyncDisposable>()
  })
})
